//! Helpers shared by the benches (none yet).
