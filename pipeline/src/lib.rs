//! weft-pipeline: the `weft` binary's library.
//!
//! `weft analyze` reads real Rust crates and analyzes them as queries on the
//! Weft engine; one concern per module:
//!
//! - [`crate_graph`] — which crates, from `cargo metadata` or a bare directory/file;
//! - [`source`] — `file_text` and `parse` (syn, lowered by [`lower`] into the
//!   `Send + Sync` [`item_tree`]);
//! - [`def_map`] — `def_map(crate)` and its import fixed point, with
//!   [`module_tree`] (module files, items) and [`resolve`] (paths);
//! - [`consts`] — `const_value(def)`;
//! - [`panics`] — `callees(fn)`, `panic_graph(crate)`, `may_panic(fn)`;
//! - [`report`] — `crate_report(crate)` and the text/JSON output;
//! - [`analyze`] — the driver (runtime, progress, exit status);
//! - [`cli`] — options shared by the subcommands.
//!
//! `weft replay` ([`replay`]) replays rustc's own query graphs, read from
//! its self-profiles; `weft synth` ([`synth`]) runs synthetic graphs;
//! `weft simulate` ([`simulate`]) predicts a trace on more workers.
//!
//! Documented simplifications: no macro expansion (an item macro whose body is
//! plain items, such as a `cfg_*! { .. }` wrapper or `cfg_if!`, is read as
//! those items), `cfg` ignored (all items count), method calls are not
//! resolved by type, no std/core prelude sources.

pub mod analyze;
pub mod cli;
pub mod consts;
pub mod crate_graph;
pub mod db;
pub mod def_map;
pub mod item_tree;
pub mod lower;
pub mod module_tree;
pub mod panics;
pub mod profile_out;
pub mod replay;
pub mod report;
pub mod resolve;
pub mod simulate;
pub mod source;
pub mod synth;
