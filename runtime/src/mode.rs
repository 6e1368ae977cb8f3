//! How a [`Runtime`](crate::Runtime) runs tasks: on fibers, on blocking OS
//! threads, or serially on the caller's thread.
//!
//! The mode is chosen at run time (`--mode fibers|threads|serial`), so one
//! program can be compared against itself: threads mode blocks a worker on a
//! wait as rustc's parallel front-end does today, serial mode is plain
//! recursion for debugging and for platforms without fiber support.

use std::fmt;
use std::str::FromStr;

/// The execution mode of a runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// Every task runs on a stackful coroutine (a fiber, from `corosensei`).
    /// A task that waits suspends its fiber and its worker runs other work.
    /// Needs the `fibers` cargo feature.
    Fibers,
    /// Tasks run on the worker's own stack; a wait blocks the OS thread on a
    /// latch (as rustc's `-Z threads` front-end does). A blocked worker never
    /// steals.
    Threads,
    /// No worker threads and no fibers: everything runs inline on the
    /// caller's thread, in program order.
    Serial,
}

impl Mode {
    /// All modes, in the order `fibers`, `threads`, `serial`.
    pub const ALL: [Mode; 3] = [Mode::Fibers, Mode::Threads, Mode::Serial];

    /// The best mode this build and platform support: `Fibers` when the
    /// `fibers` feature is on, `Threads` otherwise.
    pub fn default_for_platform() -> Mode {
        if Mode::fibers_available() {
            Mode::Fibers
        } else {
            Mode::Threads
        }
    }

    /// Whether this build can run `Mode::Fibers` (the `fibers` feature).
    pub fn fibers_available() -> bool {
        cfg!(feature = "fibers")
    }

    /// The lowercase name used on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Fibers => "fibers",
            Mode::Threads => "threads",
            Mode::Serial => "serial",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`Mode::from_str`]: the text named no mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode `{0}`: expected `fibers`, `threads` or `serial`")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Mode, ParseModeError> {
        match s {
            "fibers" => Ok(Mode::Fibers),
            "threads" => Ok(Mode::Threads),
            "serial" => Ok(Mode::Serial),
            other => Err(ParseModeError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        assert!("fiber".parse::<Mode>().is_err());
    }
}
