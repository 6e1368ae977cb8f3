//! Running a [`ReplayGraph`] on the Weft engine: one query per node, which
//! reads its dependencies as the policy says and spins for its self time.
//!
//! A node's value mixes its index with the values of its reads, in recorded
//! order, whatever the policy: the root's value (the checksum) depends on the
//! graph alone, so it is identical in every mode, at every `-j` and under
//! every policy.
//!
//! Policies:
//!
//! - [`Policy::Recorded`]: the steps in recorded order, as serial rustc ran
//!   them.
//!
//! The self time between two reads that were cache hits in rustc is spun in
//! one piece, before the next read that executed a query (or a parallel
//! site, or the node's end): a profile has a self-time piece per read,
//! most under a microsecond, and reading the clock for each would add its
//! own cost (about 20 ns) to every read. Hits take no time in the model, so
//! this moves no work past another query's.
//! - [`Policy::Sites`]: as `recorded`, but inside the activities where
//!   rustc's parallel front-end runs a parallel loop ([`SITE_ACTIVITIES`]),
//!   the reads are split into *units*, maximal runs of consecutive reads of
//!   one key text (the body or module the loop's closure was called for,
//!   e.g. `check_unsafety(f)`, `check_liveness(f)`, `mir_borrowck(f)`), and
//!   the units run with `par_for_each`, each unit's steps in order.
//! - [`Policy::Dataflow`]: every node reads all its dependencies at once with
//!   `par_map`, then does all its work: the parallelism a fully query-based
//!   front-end could have.

use std::time::{Duration, Instant};

use weft_queries::{query, Cx};

use super::graph::{ReplayGraph, Step, StepKind};
use crate::synth::mix;

/// How a replayed node reads its dependencies (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Policy {
    /// In recorded order, one after the other.
    Recorded,
    /// In recorded order, except rustc's parallel loops, which run in
    /// parallel.
    Sites,
    /// All at once, before the node's own work.
    Dataflow,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Recorded => "recorded",
            Policy::Sites => "sites",
            Policy::Dataflow => "dataflow",
        })
    }
}

/// The activities (rustc's `sess.time` labels) inside which rustc's parallel
/// front-end runs its reads in a parallel loop (rustc-dev-guide, "Parallel
/// compilation"; `rustc_interface::passes` and `rustc_hir_analysis::check_crate`):
///
/// - `par_hir_body_owners`: `type_check_crate` (`typeck` of every body),
///   `MIR_borrow_checking` (`check_unsafety`, `check_liveness`,
///   `mir_borrowck`, ... per body), `MIR_effect_checking`,
///   `MIR_coroutine_by_move_body`, `coroutine_obligations`;
/// - `par_hir_for_each_module` and `parallel!`: `misc_checking_1`,
///   `misc_checking_2`, `misc_checking_3`, `liveness_and_intrinsic_checking`,
///   `privacy_checking_modules`, `module_lints`, `lint_checking`,
///   `coherence_checking`, `wf_checking`, `check_mod_type_wf`;
/// - metadata: `generate_crate_metadata` (prefetched in parallel with the
///   encoding), `monomorphization_collector_graph_walk` (mono items; only in
///   builds, not in `check`).
///
/// The names that occur in our profiles, and the queries read directly
/// inside each, are listed by `weft replay PROFILE --sites`.
pub const SITE_ACTIVITIES: &[&str] = &[
    "type_check_crate",
    "MIR_borrow_checking",
    "MIR_effect_checking",
    "MIR_coroutine_by_move_body",
    "coroutine_obligations",
    "misc_checking_1",
    "misc_checking_2",
    "misc_checking_3",
    "liveness_and_intrinsic_checking",
    "privacy_checking_modules",
    "module_lints",
    "lint_checking",
    "coherence_checking",
    "wf_checking",
    "check_mod_type_wf",
    "generate_crate_metadata",
    "monomorphization_collector_graph_walk",
];

/// The database of a replay: the graph, the policy and the time scale.
#[derive(Debug)]
pub struct ReplayDb {
    graph: ReplayGraph,
    policy: Policy,
    /// Self times are multiplied by `scale_num / 1024`.
    scale_num: u64,
    /// `is_site[name]`: the activity name is a parallel site.
    is_site: Vec<bool>,
}

impl ReplayDb {
    /// A database replaying `graph` under `policy`, every self time
    /// multiplied by `scale` (≥ 0; rounded to 1/1024).
    pub fn new(graph: ReplayGraph, policy: Policy, scale: f64) -> ReplayDb {
        let is_site = graph
            .names
            .iter()
            .map(|n| SITE_ACTIVITIES.contains(&n.as_str()))
            .collect();
        ReplayDb {
            graph,
            policy,
            scale_num: (scale.max(0.0) * 1024.0).round() as u64,
            is_site,
        }
    }

    /// The graph replayed.
    pub fn graph(&self) -> &ReplayGraph {
        &self.graph
    }

    /// The policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// `ns` of recorded self time, scaled.
    pub fn scaled(&self, ns: u64) -> u64 {
        ((u128::from(ns) * u128::from(self.scale_num)) >> 10) as u64
    }

    /// The scaled work of node `id`: its work steps, each scaled (as the
    /// `recorded` policy spins them).
    pub fn scaled_work_of(&self, id: u32) -> u64 {
        self.graph
            .steps_of(id)
            .iter()
            .map(|s| match s.kind() {
                StepKind::Work(ns) => self.scaled(ns),
                _ => 0,
            })
            .sum()
    }

    /// Whether the activity `name` is one of [`SITE_ACTIVITIES`].
    pub fn is_site(&self, name: u32) -> bool {
        self.is_site.get(name as usize).copied().unwrap_or(false)
    }
}

fn fold(acc: u64, v: u64) -> u64 {
    mix(acc.rotate_left(5) ^ v)
}

thread_local! {
    /// Nanoseconds this thread has spun beyond what [`spin`] was asked for.
    static OVERSHOOT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Spins for `ns` nanoseconds of the monotonic clock, less what earlier
/// calls on this thread overshot: the clock is read once per loop turn
/// (about 20 ns), so each call overshoots a little, and a profile has
/// hundreds of thousands of sub-microsecond self times. A call asked for
/// less than the overshoot spins not at all. Engine time between calls is
/// not compensated: it is what the replay measures.
pub fn spin(ns: u64) {
    let owed = OVERSHOOT.with(|o| o.get());
    if ns <= owed {
        OVERSHOOT.with(|o| o.set(owed - ns));
        return;
    }
    let target = Duration::from_nanos(ns - owed);
    let start = Instant::now();
    loop {
        let spun = start.elapsed();
        if spun >= target {
            OVERSHOOT.with(|o| o.set((spun - target).as_nanos() as u64));
            return;
        }
        std::hint::spin_loop();
    }
}

/// How profiles name a replay node: rustc's query name and key text,
/// `typeck(syn::parse::parse_str)`; a key text longer than 120 characters
/// is cut (rustc prints whole canonical types in keys).
fn describe_node(db: &ReplayDb, &id: &u32) -> String {
    let (name, key) = (db.graph.name_of(id), db.graph.key_of(id));
    match key.char_indices().nth(120) {
        Some((cut, _)) => format!("{name}({}…)", &key[..cut]),
        None => format!("{name}({key})"),
    }
}

/// The query: one node of the replay graph (node ids are dense).
#[query(dense, describe = describe_node)]
pub fn replay_node(cx: &Cx<'_, ReplayDb>, id: u32) -> u64 {
    let db = cx.db();
    let steps = db.graph.steps_of(id);
    let mut acc = mix(u64::from(id));
    match db.policy {
        Policy::Recorded => {
            let mut pending = 0;
            for s in steps {
                match s.kind() {
                    StepKind::Work(ns) => pending += db.scaled(ns),
                    StepKind::Read { node, hit } => {
                        if !hit {
                            spin(std::mem::take(&mut pending));
                        }
                        acc = fold(acc, cx.replay_node(node));
                    }
                    StepKind::Begin(_) | StepKind::End => {}
                }
            }
            spin(pending);
        }
        Policy::Sites => run_steps(cx, steps, &mut |v| acc = fold(acc, v)),
        Policy::Dataflow => {
            let deps: Vec<u32> = steps
                .iter()
                .filter_map(|s| match s.kind() {
                    StepKind::Read { node, .. } => Some(node),
                    _ => None,
                })
                .collect();
            let values = match deps.as_slice() {
                [] => Vec::new(),
                &[d] => vec![cx.replay_node(d)],
                deps => weft_runtime::par_map(deps, |_, &d| cx.replay_node(d)),
            };
            spin(db.scaled_work_of(id));
            for v in values {
                acc = fold(acc, v);
            }
        }
    }
    acc
}

/// Runs `steps` under the `sites` policy, handing each read's value to
/// `out` in recorded order.
fn run_steps(cx: &Cx<'_, ReplayDb>, steps: &[Step], out: &mut dyn FnMut(u64)) {
    let db = cx.db();
    let mut pending = 0;
    let mut i = 0;
    while i < steps.len() {
        match steps[i].kind() {
            StepKind::Work(ns) => pending += db.scaled(ns),
            StepKind::Read { node, hit } => {
                if !hit {
                    spin(std::mem::take(&mut pending));
                }
                out(cx.replay_node(node));
            }
            StepKind::Begin(name) => {
                let end = matching_end(steps, i);
                if db.is_site(name) {
                    spin(std::mem::take(&mut pending));
                    let units = units(db.graph(), &steps[i + 1..end]);
                    let values = weft_runtime::par_map(&units, |_, unit| {
                        let mut vs = Vec::new();
                        run_steps(cx, unit, &mut |v| vs.push(v));
                        vs
                    });
                    values.into_iter().flatten().for_each(&mut *out);
                    i = end;
                }
            }
            StepKind::End => {}
        }
        i += 1;
    }
    spin(pending);
}

/// The index of the `End` that closes the `Begin` at `steps[begin]`.
fn matching_end(steps: &[Step], begin: usize) -> usize {
    let mut depth = 0usize;
    for (j, s) in steps.iter().enumerate().skip(begin) {
        match s.kind() {
            StepKind::Begin(_) => depth += 1,
            StepKind::End => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    // `ReplayGraph::validate` checked that every Begin has its End.
    steps.len()
}

/// Splits the inside of a site into units: maximal runs of reads of one
/// key text, each with the work before it; a nested activity belongs to the
/// unit it is in (or starts one, if it opens the site).
fn units<'s>(graph: &ReplayGraph, inside: &'s [Step]) -> Vec<&'s [Step]> {
    let mut units = Vec::new();
    let (mut start, mut key) = (0usize, None::<u32>);
    let mut i = 0;
    while i < inside.len() {
        match inside[i].kind() {
            StepKind::Read { node, .. } => {
                let k = graph.nodes[node as usize].key;
                if key.is_some_and(|cur| cur != k) {
                    // The work just before this read goes with it.
                    let cut = if i > start && matches!(inside[i - 1].kind(), StepKind::Work(_)) {
                        i - 1
                    } else {
                        i
                    };
                    if cut > start {
                        units.push(&inside[start..cut]);
                        start = cut;
                    }
                }
                key = Some(k);
            }
            StepKind::Begin(_) => {
                i = matching_end(inside, i);
                key.get_or_insert(u32::MAX);
            }
            StepKind::Work(_) | StepKind::End => {}
        }
        i += 1;
    }
    if start < inside.len() {
        units.push(&inside[start..]);
    }
    units
}

/// Work `T1` and span `T∞` of the graph under `policy`, in scaled ns.
///
/// `T1` is every node's work. `T∞` is the finish time of the root with
/// unbounded workers, computed by evaluating the nodes in the order a
/// serial run reaches them: a node starts when it is first read, a read of
/// a node already started waits for its finish. That is exact for a serial
/// policy (`recorded`: `T∞ = T1`) and for trees; when a shared query is
/// reached first on a path that is not the earliest one, it is an upper
/// bound.
pub fn work_and_span(db: &ReplayDb) -> (u64, u64) {
    let g = db.graph();
    let t1: u64 = (0..g.nodes.len() as u32)
        .map(|i| db.scaled_work_of(i))
        .sum();
    let mut finish: Vec<Option<u64>> = vec![None; g.nodes.len()];
    let tinf = span_from(db, 0, 0, &mut finish);
    (t1, tinf)
}

/// Finish time of node `id` started at `t` (see [`work_and_span`]); an
/// explicit stack, since real graphs are deeper than the thread's stack.
fn span_from(db: &ReplayDb, id: u32, t: u64, finish: &mut [Option<u64>]) -> u64 {
    /// One node's steps (`node` is `None` for a unit of a site), or a
    /// site's units, which all start at `start`.
    enum Frame<'g> {
        Steps {
            node: Option<u32>,
            steps: &'g [Step],
            at: usize,
            /// Time of the next step (serial policies; the start under
            /// `dataflow`).
            clock: u64,
            /// Latest finish of a read (`dataflow`).
            latest: u64,
        },
        Group {
            units: Vec<&'g [Step]>,
            next: usize,
            start: u64,
            latest: u64,
        },
    }
    let g = db.graph();
    let dataflow = db.policy == Policy::Dataflow;
    fn steps_frame(node: Option<u32>, steps: &[Step], clock: u64) -> Frame<'_> {
        Frame::Steps {
            node,
            steps,
            at: 0,
            clock,
            latest: clock,
        }
    }
    let mut stack = vec![steps_frame(Some(id), g.steps_of(id), t)];
    loop {
        // `Some(done)`: the top frame finished at `done`.
        let mut finished = None;
        match stack.last_mut().expect("a frame") {
            Frame::Group {
                units,
                next,
                start,
                latest,
            } => {
                if *next < units.len() {
                    let (unit, start) = (units[*next], *start);
                    *next += 1;
                    stack.push(steps_frame(None, unit, start));
                } else {
                    finished = Some(*latest);
                }
            }
            Frame::Steps {
                node,
                steps,
                at,
                clock,
                latest,
            } => {
                if *at >= steps.len() {
                    let done = if dataflow {
                        let work = node.map_or(0, |n| db.scaled_work_of(n));
                        (*latest).max(*clock) + work
                    } else {
                        *clock
                    };
                    if let Some(n) = *node {
                        finish[n as usize] = Some(done);
                    }
                    finished = Some(done);
                } else {
                    let s = steps[*at];
                    *at += 1;
                    match s.kind() {
                        StepKind::Work(ns) if !dataflow => *clock += db.scaled(ns),
                        StepKind::Work(_) | StepKind::End => {}
                        StepKind::Read { node: d, .. } => match finish[d as usize] {
                            Some(f) if dataflow => *latest = (*latest).max(f),
                            Some(f) => *clock = (*clock).max(f),
                            None => {
                                let c = *clock;
                                stack.push(steps_frame(Some(d), g.steps_of(d), c));
                            }
                        },
                        StepKind::Begin(name) if db.policy == Policy::Sites && db.is_site(name) => {
                            let begin = *at - 1;
                            let end = matching_end(steps, begin);
                            let units = units(g, &steps[begin + 1..end]);
                            *at = end + 1;
                            let start = *clock;
                            stack.push(Frame::Group {
                                units,
                                next: 0,
                                start,
                                latest: start,
                            });
                        }
                        StepKind::Begin(_) => {}
                    }
                }
            }
        }
        let Some(done) = finished else { continue };
        stack.pop();
        match stack.last_mut() {
            None => return done,
            Some(Frame::Steps { clock, latest, .. }) => {
                if dataflow {
                    *latest = (*latest).max(done);
                } else {
                    *clock = (*clock).max(done);
                }
            }
            Some(Frame::Group { latest, .. }) => *latest = (*latest).max(done),
        }
    }
}
