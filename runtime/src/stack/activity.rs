//! The activity label: what the current fiber or thread is computing, for the
//! stack-overflow message.
//!
//! The query engine calls [`set_current_activity`] at every query entry with
//! a short description such as `const_value(a::A)`. The signal handler in
//! `overflow.rs` must print it without allocating or locking, so the label is
//! copied into a fixed-size [`ActivityBuf`]:
//!
//! - a fiber's buffer lives at the very top of its stack (carved by
//!   `StackPool`, above the `base` given to corosensei), so it exists exactly
//!   as long as the fiber's stack and costs no allocation;
//! - an OS thread (threads mode, serial mode, a worker's own loop) uses a
//!   buffer in a thread-local.
//!
//! The thread-local [`CURRENT`] points at the buffer of whatever runs on this
//! thread now; the worker swaps it at every fiber resume and suspend together
//! with the stack bounds (`StackBoundsGuard::enter_fiber`). Because every
//! fiber has its own buffer, guards nest properly per fiber even though
//! fibers interleave on one thread: a guard restores the previous label *of
//! its own buffer* when dropped.
//!
//! A static label ([`set_current_activity_name`], what the engine uses for
//! query names) is not copied: the buffer points at it.
//!
//! Labels longer than [`ACTIVITY_CAPACITY`] bytes are cut at a character
//! boundary. Writing is not atomic with respect to the handler: if the stack
//! overflows in the middle of a copy the message may show a partial label,
//! which is acceptable for a process that is about to die.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::ptr;

/// Bytes of label kept per fiber or thread.
pub(crate) const ACTIVITY_CAPACITY: usize = 112;

/// A fixed-size label buffer; 144 bytes, so it fits at the top of a stack
/// without disturbing the stack's 16-byte alignment. It holds either a
/// static name (`name`, set by [`set_current_activity_name`]: no copy) or,
/// when `name` is null, a copied label (`bytes`).
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub(crate) struct ActivityBuf {
    /// A `&'static str`'s bytes, or null.
    name: *const u8,
    name_len: usize,
    len: usize,
    /// Non-zero when a label was cut.
    truncated: usize,
    bytes: [u8; ACTIVITY_CAPACITY],
}

impl ActivityBuf {
    pub(crate) const EMPTY: ActivityBuf = ActivityBuf {
        name: ptr::null(),
        name_len: 0,
        len: 0,
        truncated: 0,
        bytes: [0; ACTIVITY_CAPACITY],
    };

    /// The label bytes, clamped to the capacity (the handler may read a
    /// buffer that is being written).
    pub(crate) fn label(&self) -> &[u8] {
        if !self.name.is_null() {
            // SAFETY: a non-null `name` comes with its length from a
            // `&'static str` (`set_current_activity_name`), which lives
            // for the program.
            return unsafe { std::slice::from_raw_parts(self.name, self.name_len) };
        }
        &self.bytes[..self.len.min(ACTIVITY_CAPACITY)]
    }

    /// Whether the stored label was cut to fit.
    pub(crate) fn is_truncated(&self) -> bool {
        self.name.is_null() && self.truncated != 0
    }

    fn set(&mut self, label: &str) {
        let mut n = label.len().min(ACTIVITY_CAPACITY);
        while !label.is_char_boundary(n) {
            n -= 1;
        }
        self.name = ptr::null();
        self.len = 0;
        self.bytes[..n].copy_from_slice(&label.as_bytes()[..n]);
        self.truncated = usize::from(n < label.len());
        self.len = n;
    }
}

thread_local! {
    /// The OS thread's own label buffer (used when no fiber runs).
    static THREAD_BUF: UnsafeCell<ActivityBuf> = const { UnsafeCell::new(ActivityBuf::EMPTY) };
    /// The buffer of what runs now: null means `THREAD_BUF`, otherwise the
    /// buffer at the top of the running fiber's stack.
    static CURRENT: Cell<*mut ActivityBuf> = const { Cell::new(ptr::null_mut()) };
}

/// The buffer of what runs on this thread now. Never null.
pub(crate) fn current_buf() -> *mut ActivityBuf {
    let current = CURRENT.with(Cell::get);
    if current.is_null() {
        THREAD_BUF.with(UnsafeCell::get)
    } else {
        current
    }
}

/// Like [`current_buf`], for the signal handler: `None` instead of a panic
/// if thread-locals are unavailable (thread teardown).
pub(crate) fn current_buf_in_handler() -> Option<*mut ActivityBuf> {
    let current = CURRENT.try_with(Cell::get).ok()?;
    if current.is_null() {
        THREAD_BUF.try_with(UnsafeCell::get).ok()
    } else {
        Some(current)
    }
}

/// Makes `buf` the current buffer and returns the previous value of
/// `CURRENT` (null = the thread's own buffer), for the fiber switch.
pub(crate) fn swap_current(buf: *mut ActivityBuf) -> *mut ActivityBuf {
    CURRENT.with(|c| c.replace(buf))
}

/// Records what the current fiber or thread is computing, for the
/// stack-overflow message; the previous label comes back when the guard is
/// dropped.
///
/// The query engine calls this at every query entry with a short
/// description such as `const_value(a::A)`. Cost: one copy of at most
/// 112 bytes in, and one of 128 bytes out of the returned guard; no
/// allocation.
///
/// ```text
/// let _guard = weft_runtime::set_current_activity("parse(src/lib.rs)");
/// // a stack overflow here reports "while computing parse(src/lib.rs)"
/// ```
pub fn set_current_activity(label: &str) -> ActivityGuard {
    let buf = current_buf();
    // SAFETY: `buf` is the buffer of the code running on this thread now
    // (the thread's own or the running fiber's, at the top of its stack,
    // which lives while the fiber runs); only this thread touches it.
    let prev = unsafe {
        let prev = *buf;
        (*buf).set(label);
        prev
    };
    ActivityGuard {
        buf,
        prev,
        _not_send: PhantomData,
    }
}

/// [`set_current_activity`] for a static label, such as a query's name:
/// nothing is copied (the buffer points at the name), and the guard keeps
/// and restores two words instead of the whole buffer. The query engine
/// calls this at every query execution.
pub fn set_current_activity_name(name: &'static str) -> ActivityNameGuard {
    let buf = current_buf();
    // SAFETY: as in `set_current_activity`: the buffer of the code running
    // on this thread now, touched only by this thread.
    let prev = unsafe {
        let prev = ((*buf).name, (*buf).name_len);
        (*buf).name_len = name.len();
        (*buf).name = name.as_ptr();
        prev
    };
    ActivityNameGuard {
        buf,
        prev,
        _not_send: PhantomData,
    }
}

/// Restores the previous static name (or none, so that a copied label
/// shows again) when dropped; returned by [`set_current_activity_name`].
/// Must be dropped on the fiber or thread that created it (it is `!Send`).
#[must_use = "the label is reset when the guard is dropped"]
pub struct ActivityNameGuard {
    buf: *mut ActivityBuf,
    prev: (*const u8, usize),
    _not_send: PhantomData<*const ()>,
}

impl Drop for ActivityNameGuard {
    fn drop(&mut self) {
        // SAFETY: as for `ActivityGuard`.
        unsafe {
            (*self.buf).name = self.prev.0;
            (*self.buf).name_len = self.prev.1;
        }
    }
}

impl std::fmt::Debug for ActivityNameGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityNameGuard").finish_non_exhaustive()
    }
}

/// Restores the previous activity label when dropped; returned by
/// [`set_current_activity`]. Must be dropped on the fiber or thread that
/// created it (it is `!Send`).
#[must_use = "the label is reset when the guard is dropped"]
pub struct ActivityGuard {
    buf: *mut ActivityBuf,
    prev: ActivityBuf,
    _not_send: PhantomData<*const ()>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        // SAFETY: the guard is !Send and dropped by the fiber or thread that
        // created it, whose buffer `buf` is still alive (a fiber's stack
        // outlives the frames on it).
        unsafe { *self.buf = self.prev };
    }
}

impl std::fmt::Debug for ActivityGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityGuard").finish_non_exhaustive()
    }
}

/// The current label as a `String` (for tests and diagnostics).
#[allow(dead_code)]
pub(crate) fn current_activity() -> String {
    // SAFETY: see `set_current_activity`; read-only copy on the owning thread.
    let buf = unsafe { *current_buf() };
    String::from_utf8_lossy(buf.label()).into_owned()
}
