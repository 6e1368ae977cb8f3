//! Turning a fiber stack overflow into a clear message instead of a silent
//! `SIGSEGV`.
//!
//! Rust's own overflow handler knows only the guard page of each OS thread;
//! a fault in a fiber's guard would end the process with a bare
//! "Segmentation fault". We install a `SIGSEGV`/`SIGBUS` handler once per
//! process ([`install_overflow_handler`]) that runs on an alternate signal
//! stack (the faulting stack has no room left), and:
//!
//! 1. if the fault address lies in a guard region of a chunk carved by a
//!    `StackPool` (`carve::find_guard`), writes one line to stderr naming the
//!    worker, the current activity label (the query) and the stack size, and
//!    ends the process with `_exit(134)`;
//! 2. otherwise re-installs the handler that was there before ours (usually
//!    std's, which reports OS-thread overflows) and returns: the faulting
//!    instruction runs again and gets the previous behaviour.
//!
//! Everything the handler does is async-signal-safe: atomics, reads of
//! const-initialised thread-locals without destructors, `write(2)`,
//! `sigaction(2)` and `_exit(2)`. The message is formatted into a buffer on
//! the alternate stack.
//!
//! Each thread needs its own alternate stack (`sigaltstack` is per thread).
//! std gives one to the main thread and to every thread it spawns; workers
//! call [`install_alt_stack_for_thread`] anyway, which installs one only if
//! the thread has none.

use std::cell::Cell;
use std::sync::Once;

use super::activity;
use super::carve::{self, StackKind};

thread_local! {
    /// Index of the worker running on this thread, `usize::MAX` if none.
    static WORKER_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Records the index of the worker running on this thread, for the
/// overflow message. The worker calls this when it starts.
pub(crate) fn set_worker_index_for_signal(index: usize) {
    WORKER_INDEX.with(|w| w.set(index));
}

#[cfg(unix)]
mod imp {
    use std::cell::UnsafeCell;
    use std::mem::MaybeUninit;
    use std::ptr;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The actions that were installed before ours, for SIGSEGV and SIGBUS.
    pub(super) struct PrevActions {
        actions: UnsafeCell<[MaybeUninit<libc::sigaction>; 2]>,
        /// Set (Release) after `actions` is written; read (Acquire) by the
        /// handler before it reads `actions`.
        pub(super) saved: AtomicBool,
    }

    // SAFETY: `actions` is written once, inside `Once::call_once`, before
    // `saved` is set with Release; afterwards it is only read.
    unsafe impl Sync for PrevActions {}

    pub(super) static PREV: PrevActions = PrevActions {
        actions: UnsafeCell::new([MaybeUninit::uninit(), MaybeUninit::uninit()]),
        saved: AtomicBool::new(false),
    };

    pub(super) fn index(sig: libc::c_int) -> usize {
        usize::from(sig != libc::SIGSEGV)
    }

    /// Installs `handler` for SIGSEGV and SIGBUS, saving the old actions.
    ///
    /// # Safety
    ///
    /// Must run at most once per process (inside `Once`).
    pub(super) unsafe fn install(
        handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
    ) {
        for sig in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: zeroed sigaction is a valid "SIG_DFL, no flags" value;
            // `PREV.actions` is written only here, before `saved` is set.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(sig, ptr::null(), &mut old);
                (*PREV.actions.get())[index(sig)] = MaybeUninit::new(old);
            }
        }
        // Release: the saved actions are visible to a handler that sees `saved`.
        PREV.saved.store(true, Ordering::Release);
        for sig in [libc::SIGSEGV, libc::SIGBUS] {
            // SAFETY: installing a handler with a fully initialised sigaction.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as usize;
                action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, ptr::null_mut());
            }
        }
    }

    /// Re-installs the action that was there before ours (SIG_DFL if none).
    /// Async-signal-safe.
    pub(super) fn restore_previous(sig: libc::c_int) {
        // Acquire: pairs with the Release store in `install`.
        if PREV.saved.load(Ordering::Acquire) {
            // SAFETY: `saved` is set, so the entry is initialised and no
            // longer written.
            unsafe {
                let old = (*PREV.actions.get())[index(sig)].as_ptr();
                libc::sigaction(sig, old, ptr::null_mut());
            }
        } else {
            // SAFETY: a zeroed sigaction is SIG_DFL.
            unsafe {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
    }
}

/// Installs the stack-overflow handler for SIGSEGV and SIGBUS, once per
/// process. Idempotent and cheap after the first call.
pub(crate) fn install_overflow_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        #[cfg(unix)]
        // SAFETY: inside `Once`, so at most once per process.
        unsafe {
            imp::install(handle_fault);
        }
    });
}

/// Whether our handler has been installed (for tests).
#[allow(dead_code)]
pub(crate) fn overflow_handler_installed() -> bool {
    #[cfg(unix)]
    {
        imp::PREV.saved.load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(unix))]
    {
        false
    }
}

#[cfg(unix)]
extern "C" fn handle_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers;
    // for SIGSEGV/SIGBUS `si_addr` is the fault address.
    let addr = unsafe { (*info).si_addr() } as usize;
    match carve::find_guard(addr) {
        Some(hit) => {
            report(hit.kind, hit.stack_size);
            // SAFETY: _exit is async-signal-safe and ends the process.
            unsafe { libc::_exit(134) }
        }
        None => {
            // An overflow of the OS thread's own stack (threads or serial
            // mode): name the query, then let the previous handler (std's)
            // report and abort.
            if let Some(limit) = super::os_stack_limit_in_handler() {
                if addr < limit && limit - addr <= OS_GUARD_WINDOW {
                    report(StackKind::Thread, 0);
                }
            }
            imp::restore_previous(sig);
        }
    }
}

/// A fault this far below an OS thread's usable limit counts as an overflow
/// of that thread's stack (guard page, or the kernel's 1 MiB gap below the
/// main thread's stack).
#[cfg(unix)]
const OS_GUARD_WINDOW: usize = 1024 * 1024 + 64 * 1024;

/// Writes the overflow message to stderr without allocating.
#[cfg(unix)]
fn report(kind: StackKind, stack_size: usize) {
    let mut msg = MessageBuf::new();
    match kind {
        StackKind::Fiber => msg.push(b"weft: fiber stack overflow on "),
        StackKind::Segment => {
            msg.push(b"weft: stack overflow on an ensure_sufficient_stack segment on ")
        }
        StackKind::Thread => msg.push(b"weft: thread stack overflow on "),
    }
    match WORKER_INDEX.try_with(Cell::get) {
        Ok(index) if index != usize::MAX => {
            msg.push(b"worker ");
            msg.push_usize(index);
        }
        _ => msg.push(b"a thread outside the worker pool"),
    }
    msg.push(b" while computing ");
    match activity::current_buf_in_handler() {
        // SAFETY: the buffer belongs to the code that was running on this
        // thread; it is read only, and its length is clamped.
        Some(buf) => unsafe {
            let buf = &*buf;
            if buf.label().is_empty() {
                msg.push(b"<no query>");
            } else {
                msg.push(buf.label());
                if buf.is_truncated() {
                    msg.push(b"...");
                }
            }
        },
        None => msg.push(b"<unknown>"),
    }
    if kind == StackKind::Thread {
        msg.push(b"\n");
        msg.write_to_stderr();
        return;
    }
    msg.push(b"; stack size ");
    msg.push_usize(stack_size);
    match kind {
        StackKind::Thread => {}
        StackKind::Fiber => msg.push(b" bytes (Runtime::builder().stack_size() sets it)\n"),
        StackKind::Segment => msg.push(
            b" bytes; recursive code must call weft_runtime::ensure_sufficient_stack more often\n",
        ),
    }
    msg.write_to_stderr();
}

/// A fixed buffer for the message; excess bytes are dropped.
struct MessageBuf {
    bytes: [u8; 512],
    len: usize,
}

impl MessageBuf {
    fn new() -> MessageBuf {
        MessageBuf {
            bytes: [0; 512],
            len: 0,
        }
    }

    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_usize(&mut self, mut v: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    #[cfg(unix)]
    fn write_to_stderr(&self) {
        let mut done = 0;
        while done < self.len {
            // SAFETY: write(2) on fd 2 from a valid buffer; async-signal-safe.
            let n = unsafe {
                libc::write(
                    2,
                    self.bytes[done..self.len].as_ptr().cast(),
                    self.len - done,
                )
            };
            if n <= 0 {
                break;
            }
            done += n as usize;
        }
    }
}

/// Uninstalls the alternate signal stack it installed when dropped; returned
/// by [`install_alt_stack_for_thread`]. Keep it alive for the whole life of
/// the worker thread.
#[derive(Debug)]
pub(crate) struct AltStackGuard {
    /// `(mapping start, mapping length)` if we installed a stack.
    #[cfg_attr(not(unix), allow(dead_code))]
    mapping: Option<(usize, usize)>,
    /// Dropped on the thread whose alternate stack it is.
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Bytes of alternate signal stack we install (plus one guard page): the
/// handler needs well under 4 KiB, std's previous handler a little more.
#[cfg(unix)]
const ALT_STACK_SIZE: usize = 64 * 1024;

/// Gives the calling thread an alternate signal stack if it has none, so
/// that the overflow handler can run when the thread's current stack is
/// exhausted. Workers call this at start and keep the guard.
pub(crate) fn install_alt_stack_for_thread() -> AltStackGuard {
    #[cfg(unix)]
    {
        let page = carve::page_size();
        // SAFETY: querying the current alternate stack into a zeroed stack_t.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let ret = unsafe { libc::sigaltstack(std::ptr::null(), &mut current) };
        if ret == 0 && current.ss_flags & libc::SS_DISABLE == 0 {
            return AltStackGuard {
                mapping: None,
                _not_send: std::marker::PhantomData,
            }; // std or someone else gave it one
        }
        let len = page + ALT_STACK_SIZE;
        // SAFETY: a fresh anonymous mapping touches no existing memory.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANON,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return AltStackGuard {
                mapping: None,
                _not_send: std::marker::PhantomData,
            };
        }
        // SAFETY: our own fresh mapping; the lowest page becomes a guard.
        unsafe { libc::mprotect(ptr, page, libc::PROT_NONE) };
        let stack = libc::stack_t {
            ss_sp: (ptr as usize + page) as *mut libc::c_void,
            ss_flags: 0,
            ss_size: ALT_STACK_SIZE,
        };
        // SAFETY: `stack` describes writable memory that lives until the
        // guard is dropped, which disables it first.
        if unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) } != 0 {
            // SAFETY: unmapping the mapping we just made, never installed.
            unsafe { libc::munmap(ptr, len) };
            return AltStackGuard {
                mapping: None,
                _not_send: std::marker::PhantomData,
            };
        }
        AltStackGuard {
            mapping: Some((ptr as usize, len)),
            _not_send: std::marker::PhantomData,
        }
    }
    #[cfg(not(unix))]
    {
        AltStackGuard {
            mapping: None,
            _not_send: std::marker::PhantomData,
        }
    }
}

impl Drop for AltStackGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some((start, len)) = self.mapping {
            let disable = libc::stack_t {
                ss_sp: std::ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: we installed this alternate stack on this thread (the
            // guard is created and dropped by the worker thread); disable it
            // before unmapping. Not running on it: we are not in a handler.
            unsafe {
                libc::sigaltstack(&disable, std::ptr::null_mut());
                libc::munmap(start as *mut libc::c_void, len);
            }
        }
    }
}
