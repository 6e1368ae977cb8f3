//! Carving fiber stacks out of large memory mappings.
//!
//! A corosensei `DefaultStack` is one `mmap` plus one `mprotect`, that is two
//! VMAs per stack, so about 32,000 live fibers exhaust Linux's
//! `vm.max_map_count` (65,530 by default). A [`Chunk`] is instead one
//! anonymous mapping holding `count` *slots*; each slot is a guard region
//! followed by the usable stack (stacks grow down, so the guard sits below):
//!
//! ```text
//!   chunk.start                                                  chunk.end
//!   | guard | stack 0 ......... | guard | stack 1 ......... | ... |
//!           ^limit0      base0^         ^limit1      base1^
//! ```
//!
//! Guards are installed with `madvise(MADV_GUARD_INSTALL)` (Linux >= 6.13),
//! which marks page-table entries as guard markers *without splitting the
//! VMA*: a whole chunk stays one line of `/proc/self/maps`. When the kernel
//! answers `EINVAL` (older kernel, or not Linux) we fall back to
//! `mprotect(PROT_NONE)` on every guard, which splits the chunk into two VMAs
//! per stack: with the fallback the process is again limited to roughly
//! `vm.max_map_count / 2` live stacks. The choice is made once per process
//! ([`guard_method`]) and reported in the notes.
//!
//! Memory is reserved, not committed: the mapping is `MAP_NORESERVE`, pages
//! are faulted in on first touch, and transparent huge pages are disabled on
//! it (`MADV_NOHUGEPAGE`), otherwise one touched byte of a 256 KiB stack could
//! commit a 2 MiB huge page.
//!
//! # The chunk registry (read by the signal handler)
//!
//! The `SIGSEGV` handler (`overflow.rs`) must decide, without locks or
//! allocation, whether a fault address lies in one of our guards. Every chunk
//! is therefore published in [`REGISTRY`], a fixed array of atomics:
//! a writer claims an entry by a compare-exchange of `len` from 0, fills in
//! the geometry, then stores `start` with `Release`; the handler loads
//! `start` with `Acquire` and, if non-zero, reads the rest. A chunk clears
//! `start` before it is unmapped. If the registry is full (more than
//! [`REGISTRY_SLOTS`] chunks, i.e. millions of stacks) a chunk still works but
//! an overflow on it gets the kernel's plain `SIGSEGV`.

use std::io;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// What a chunk's stacks are used for; the overflow message differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StackKind {
    /// Stacks of fibers (one per task).
    Fiber = 1,
    /// Segments that `ensure_sufficient_stack` continues deep recursion on.
    Segment = 2,
    /// An OS thread's own stack (never carved; for the overflow message).
    Thread = 3,
}

/// How guard regions are installed in this process.
#[allow(dead_code)] // read by tests and the notes
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardMethod {
    /// `madvise(MADV_GUARD_INSTALL)`: no VMA split.
    GuardInstall,
    /// `mprotect(PROT_NONE)`: two VMAs per stack.
    Mprotect,
}

/// `MADV_GUARD_INSTALL` from `<linux/mman.h>` (Linux 6.13); not yet in `libc`.
#[cfg(any(target_os = "linux", target_os = "android"))]
const MADV_GUARD_INSTALL: libc::c_int = 102;

const METHOD_UNKNOWN: u8 = 0;
const METHOD_GUARD_INSTALL: u8 = 1;
const METHOD_MPROTECT: u8 = 2;

/// Cached answer of the first guard installation (`METHOD_*`).
static METHOD: AtomicU8 = AtomicU8::new(METHOD_UNKNOWN);

/// The guard method this process uses, once a chunk has been mapped.
#[allow(dead_code)]
pub(crate) fn guard_method() -> Option<GuardMethod> {
    match METHOD.load(Ordering::Relaxed) {
        METHOD_GUARD_INSTALL => Some(GuardMethod::GuardInstall),
        METHOD_MPROTECT => Some(GuardMethod::Mprotect),
        _ => None,
    }
}

/// Makes every later chunk use the `mprotect` fallback, as on a kernel
/// without `MADV_GUARD_INSTALL` (for the fallback's test, which runs in its
/// own process).
#[allow(dead_code)]
pub(crate) fn force_mprotect_guards() {
    METHOD.store(METHOD_MPROTECT, Ordering::Relaxed);
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    #[cfg(unix)]
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    #[cfg(not(unix))]
    let page = 4096;
    let page = if page > 0 { page as usize } else { 4096 };
    PAGE.store(page, Ordering::Relaxed);
    page
}

/// Geometry shared by every slot of a pool's chunks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlotLayout {
    /// Bytes of guard below each stack (a multiple of the page size).
    pub(crate) guard: usize,
    /// Usable bytes of each stack (a multiple of the page size).
    pub(crate) stack: usize,
}

impl SlotLayout {
    /// Bytes of one slot: guard plus stack.
    pub(crate) fn slot(&self) -> usize {
        self.guard + self.stack
    }
}

/// One anonymous mapping holding `count` guarded stack slots.
///
/// Invariant: `[start, start + len)` is mapped for as long as the `Chunk`
/// lives; dropping it unmaps the memory, so every stack carved from it must
/// be gone by then (the pool owns its chunks and outlives its stacks).
#[derive(Debug)]
pub(crate) struct Chunk {
    start: usize,
    len: usize,
    count: usize,
    layout: SlotLayout,
    /// Index in [`REGISTRY`], if there was room.
    registry_entry: Option<usize>,
}

impl Chunk {
    /// Maps a chunk of `count` slots and installs their guards.
    pub(crate) fn map(layout: SlotLayout, count: usize, kind: StackKind) -> io::Result<Chunk> {
        let len = layout
            .slot()
            .checked_mul(count)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "stack chunk too large"))?;
        let start = map_anonymous(len)?;
        let mut chunk = Chunk {
            start,
            len,
            count,
            layout,
            registry_entry: None,
        };
        for i in 0..count {
            install_guard(chunk.start + i * layout.slot(), layout.guard)?;
        }
        chunk.registry_entry = register(&chunk, kind);
        Ok(chunk)
    }

    /// Number of slots.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// `(limit, base)` of slot `i`: the lowest usable address (just above
    /// its guard) and the highest address (one past the stack).
    pub(crate) fn slot_bounds(&self, i: usize) -> (usize, usize) {
        assert!(i < self.count, "slot {i} out of {}", self.count);
        let slot = self.start + i * self.layout.slot();
        (slot + self.layout.guard, slot + self.layout.slot())
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(entry) = self.registry_entry {
            unregister(entry);
        }
        #[cfg(unix)]
        // SAFETY: `[start, start + len)` is the mapping this chunk owns; by the
        // type's invariant no stack carved from it is still in use.
        unsafe {
            libc::munmap(self.start as *mut libc::c_void, self.len);
        }
    }
}

/// Reserves `len` bytes of readable, writable, lazily committed memory.
#[cfg(unix)]
fn map_anonymous(len: usize) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
    #[cfg(target_os = "openbsd")]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANON | libc::MAP_STACK;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "openbsd")))]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANON;
    // SAFETY: an anonymous mapping at an address the kernel chooses touches
    // no existing memory.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: advice on the mapping we just created; failure is harmless
    // (THP may be compiled out), so the result is ignored.
    unsafe {
        libc::madvise(ptr, len, libc::MADV_NOHUGEPAGE);
    }
    Ok(ptr as usize)
}

#[cfg(not(unix))]
fn map_anonymous(_len: usize) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "weft fiber stacks need a unix mmap",
    ))
}

/// Makes `[addr, addr + len)` a guard region of a mapping we own.
#[cfg(unix)]
fn install_guard(addr: usize, len: usize) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if METHOD.load(Ordering::Relaxed) != METHOD_MPROTECT {
        // SAFETY: `[addr, addr + len)` lies inside a private anonymous mapping
        // that we own and nothing uses yet; guard markers only make it fault.
        let ret = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL) };
        if ret == 0 {
            METHOD.store(METHOD_GUARD_INSTALL, Ordering::Relaxed);
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINVAL) {
            return Err(err);
        }
        // EINVAL: this kernel does not know MADV_GUARD_INSTALL.
    }
    METHOD.store(METHOD_MPROTECT, Ordering::Relaxed);
    // SAFETY: as above; PROT_NONE on our own unused pages.
    let ret = unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(unix))]
fn install_guard(_addr: usize, _len: usize) -> io::Result<()> {
    Ok(())
}

/// Gives the pages of `[addr, addr + len)` back to the kernel; the range
/// stays mapped and reads back as zeros. Used for pooled stacks beyond the
/// pool's warm limit. Guard markers survive `MADV_DONTNEED`, and the range
/// never includes a guard anyway.
pub(crate) fn release_pages(addr: usize, len: usize) {
    #[cfg(unix)]
    // SAFETY: the caller passes the usable range of a pooled stack, which no
    // fiber runs on; discarding its contents is what we want.
    unsafe {
        libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
    #[cfg(not(unix))]
    let _ = (addr, len);
}

// ---------------------------------------------------------------------------
// Registry of chunks for the signal handler.

/// Entries in [`REGISTRY`]; with chunks of up to 256 stacks this covers
/// more than two million stacks.
pub(crate) const REGISTRY_SLOTS: usize = 8192;

struct RegistryEntry {
    /// First byte of the chunk; 0 while the entry is unpublished.
    start: AtomicUsize,
    /// Length of the chunk; 0 while the entry is free (claim by CAS).
    len: AtomicUsize,
    guard: AtomicUsize,
    stack: AtomicUsize,
    kind: AtomicU8,
}

#[allow(clippy::declare_interior_mutable_const)] // used only to initialise REGISTRY
const EMPTY_ENTRY: RegistryEntry = RegistryEntry {
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    guard: AtomicUsize::new(0),
    stack: AtomicUsize::new(0),
    kind: AtomicU8::new(0),
};

static REGISTRY: [RegistryEntry; REGISTRY_SLOTS] = [EMPTY_ENTRY; REGISTRY_SLOTS];

/// Index one past the highest entry ever claimed: the handler scans only
/// `0..REGISTRY_HIGH` (Relaxed: a stale value only shortens the scan to
/// entries that were not yet published when the fault happened).
static REGISTRY_HIGH: AtomicUsize = AtomicUsize::new(0);

fn register(chunk: &Chunk, kind: StackKind) -> Option<usize> {
    for (i, entry) in REGISTRY.iter().enumerate() {
        // Relaxed on success is enough: the entry becomes visible to the
        // handler only through the Release store of `start` below.
        if entry
            .len
            .compare_exchange(0, chunk.len, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            entry.guard.store(chunk.layout.guard, Ordering::Relaxed);
            entry.stack.store(chunk.layout.stack, Ordering::Relaxed);
            entry.kind.store(kind as u8, Ordering::Relaxed);
            REGISTRY_HIGH.fetch_max(i + 1, Ordering::Relaxed);
            // Release: publishes the geometry stored above to the handler's
            // Acquire load of `start`.
            entry.start.store(chunk.start, Ordering::Release);
            return Some(i);
        }
    }
    None
}

fn unregister(i: usize) {
    let entry = &REGISTRY[i];
    entry.start.store(0, Ordering::Relaxed);
    // Release: the entry is reused only after `start` is cleared.
    entry.len.store(0, Ordering::Release);
}

/// A fault address that hit one of our guard regions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GuardHit {
    /// What the overflowed stack was used for.
    pub(crate) kind: StackKind,
    /// Usable size of the overflowed stack in bytes.
    pub(crate) stack_size: usize,
}

/// If `addr` lies in a guard region of a registered chunk, describes it.
///
/// Async-signal-safe: atomics and arithmetic only.
pub(crate) fn find_guard(addr: usize) -> Option<GuardHit> {
    let high = REGISTRY_HIGH.load(Ordering::Relaxed).min(REGISTRY_SLOTS);
    for entry in &REGISTRY[..high] {
        // Acquire: pairs with the Release store in `register`, so the
        // geometry read below is the chunk's.
        let start = entry.start.load(Ordering::Acquire);
        if start == 0 || addr < start {
            continue;
        }
        let len = entry.len.load(Ordering::Relaxed);
        let guard = entry.guard.load(Ordering::Relaxed);
        let stack = entry.stack.load(Ordering::Relaxed);
        if addr - start >= len || guard + stack == 0 {
            continue;
        }
        if (addr - start) % (guard + stack) < guard {
            let kind = match entry.kind.load(Ordering::Relaxed) {
                2 => StackKind::Segment,
                _ => StackKind::Fiber,
            };
            return Some(GuardHit {
                kind,
                stack_size: stack,
            });
        }
        // Inside a chunk but not in a guard: not a stack overflow of ours.
        return None;
    }
    None
}
