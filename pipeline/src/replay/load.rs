//! Reading a rustc self-profile (`.mm_profdata`, through `analyzeme`) into a
//! [`ReplayGraph`].
//!
//! The profile is a flat list of events per thread: an interval for every
//! provider execution (`Query`, with the query name and key text), for every
//! non-query activity (`GenericActivity`: parsing, expansion, the analysis
//! passes, metadata decoding, ...) and for incremental bookkeeping; an
//! instant for every cache hit (`QueryCacheHit`); an interval for every wait
//! on another thread (`QueryBlocked`, `-Zthreads` only). Intervals on one
//! thread nest. The graph is built from that nesting:
//!
//! - a `Query` interval nested in another one's time is a read of that
//!   node, which the read executed (a miss);
//! - a `QueryCacheHit` instant inside an interval is a read of an existing
//!   node by the innermost enclosing query;
//! - self time (an interval less its child intervals) is work of the
//!   innermost enclosing query; outside every query it is work of the
//!   thread root, in order, between the thread's top-level queries;
//! - `QueryBlocked` time is not work; the wait is a read of the node waited
//!   for;
//! - a `GenericActivity` that contains reads is kept as a
//!   [`Begin`](StepKind::Begin)/[`End`](StepKind::End) pair around them.
//!
//! So the graph's `T1` (summed work) equals the profile's busy time: every
//! nanosecond inside an outermost interval is work of exactly one node,
//! except blocked time. An interval that starts inside another but ends
//! after it (it never happened in the profiles we read) is clipped to its
//! parent and counted in [`ProfileStats::clipped_intervals`].

use std::path::Path;
use std::time::SystemTime;

use analyzeme::{EventPayload, ProfilingData, Timestamp};
use anyhow::Context as _;
use rustc_hash::FxHashMap;

use super::graph::{Node, ProfileStats, ReplayGraph, Step, StepKind, SESSION};

/// What an interval is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    Activity,
    Blocked,
    Other,
}

/// One interval of one thread, times in ns since the profile's start.
#[derive(Debug, Clone, Copy)]
struct Interval {
    start: u64,
    end: u64,
    kind: Kind,
    name: u32,
    key: u32,
}

/// A cache hit on one thread.
#[derive(Debug, Clone, Copy)]
struct Hit {
    at: u64,
    name: u32,
    key: u32,
}

#[derive(Default)]
struct ThreadEvents {
    intervals: Vec<Interval>,
    hits: Vec<Hit>,
}

/// Interned strings.
#[derive(Default)]
struct Strings {
    list: Vec<String>,
    index: FxHashMap<String, u32>,
}

impl Strings {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.list.len() as u32;
        self.list.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// Reads the profile at `path` (a `.mm_profdata` file).
///
/// # Errors
///
/// When the file cannot be read or is not a profile `analyzeme` can decode.
pub fn load_profile(path: &Path) -> anyhow::Result<ReplayGraph> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    load_profile_bytes(bytes, path)
}

/// Reads a profile from its bytes (`path` names it in messages).
///
/// # Errors
///
/// When `analyzeme` cannot decode the bytes.
pub fn load_profile_bytes(bytes: Vec<u8>, path: &Path) -> anyhow::Result<ReplayGraph> {
    let data = ProfilingData::from_paged_buffer(bytes, Some(path))
        .map_err(|e| anyhow::anyhow!("{}: not a rustc self-profile: {e}", path.display()))?;
    Ok(from_profiling_data(&data))
}

/// Builds the graph of `data` (see the module docs).
pub fn from_profiling_data(data: &ProfilingData) -> ReplayGraph {
    let metadata = data.metadata();
    let origin = metadata.start_time;
    let crate_name = crate_name_of(&metadata.cmd);
    let ns = |t: SystemTime| t.duration_since(origin).map_or(0, |d| d.as_nanos() as u64);

    let mut names = Strings::default();
    let mut keys = Strings::default();
    names.intern(SESSION);
    keys.intern("");
    let mut stats = ProfileStats::default();
    let mut threads: std::collections::BTreeMap<u32, ThreadEvents> = Default::default();
    let (mut first, mut last) = (u64::MAX, 0u64);
    for ev in data.iter_full() {
        let kind = match &*ev.event_kind {
            "Query" => Kind::Query,
            "QueryBlocked" => Kind::Blocked,
            "GenericActivity" => Kind::Activity,
            _ => Kind::Other,
        };
        match ev.payload {
            EventPayload::Integer(n) => {
                if ev.event_kind == "QueryCacheHitCount" {
                    stats.hit_counter_total += n;
                }
            }
            EventPayload::Timestamp(Timestamp::Instant(at)) => {
                if ev.event_kind != "QueryCacheHit" {
                    continue;
                }
                stats.hit_events += 1;
                let hit = Hit {
                    at: ns(at),
                    name: names.intern(&ev.label),
                    key: keys.intern(&key_text(&ev.additional_data)),
                };
                threads.entry(ev.thread_id).or_default().hits.push(hit);
            }
            EventPayload::Timestamp(Timestamp::Interval { start, end }) => {
                match kind {
                    Kind::Query => stats.query_events += 1,
                    Kind::Blocked => stats.blocked_events += 1,
                    Kind::Activity | Kind::Other => stats.activity_events += 1,
                }
                let (start, end) = (ns(start), ns(end).max(ns(start)));
                first = first.min(start);
                last = last.max(end);
                let key = match kind {
                    Kind::Query | Kind::Blocked => keys.intern(&key_text(&ev.additional_data)),
                    _ => 0,
                };
                let iv = Interval {
                    start,
                    end,
                    kind,
                    name: names.intern(&ev.label),
                    key,
                };
                threads.entry(ev.thread_id).or_default().intervals.push(iv);
            }
        }
    }
    stats.threads = threads.len() as u32;
    stats.session_ns = last.saturating_sub(first.min(last));

    let mut b = Builder::new(threads.len());
    for (i, (_, events)) in threads.into_iter().enumerate() {
        b.thread(i as u32 + 1, events, &mut stats);
    }
    let mut graph = b.finish(crate_name, names.list, keys.list, stats);
    let (misses, hits) = graph.drop_back_edges();
    graph.stats.dropped_misses += misses;
    graph.stats.dropped_hits += hits;
    graph
}

/// The key text of a `Query`/`QueryCacheHit` event: its one argument
/// (rustc records the key as the event's single argument).
fn key_text(args: &[std::borrow::Cow<'_, str>]) -> String {
    match args {
        [] => String::new(),
        [one] => one.to_string(),
        many => many.join(", "),
    }
}

/// rustc's `--crate-name` in the profile's command line, else `?`.
fn crate_name_of(cmd: &str) -> String {
    let mut words = cmd.split_whitespace();
    while let Some(w) = words.next() {
        if w == "--crate-name" {
            if let Some(name) = words.next() {
                return name.to_owned();
            }
        }
    }
    "?".to_owned()
}

/// An open interval during the walk of one thread.
struct Frame {
    kind: Kind,
    end: u64,
    /// Up to where this frame's own time has been accounted.
    last: u64,
    /// For an activity: the owner's step count and read count at its begin.
    begin: Option<(usize, u64)>,
    /// Whether this frame pushed an owner (a query that was not dropped).
    owns: bool,
}

/// The steps of a query (or thread root) being executed.
struct Owner {
    node: u32,
    steps: Vec<Step>,
    reads: u64,
}

fn push_work(steps: &mut Vec<Step>, ns: u64) {
    if ns == 0 {
        return;
    }
    if let Some(StepKind::Work(w)) = steps.last().map(|s| s.kind()) {
        *steps.last_mut().expect("a last step") = Step::new(StepKind::Work(w + ns));
    } else {
        steps.push(Step::new(StepKind::Work(ns)));
    }
}

/// Accumulates nodes and their steps over the threads.
struct Builder {
    nodes: Vec<Node>,
    steps: Vec<Vec<Step>>,
    index: FxHashMap<(u32, u32), u32>,
    on_stack: Vec<bool>,
    thread_count: usize,
    extra_keys: Vec<String>,
}

impl Builder {
    fn new(threads: usize) -> Builder {
        let mut b = Builder {
            nodes: Vec::new(),
            steps: Vec::new(),
            index: FxHashMap::default(),
            on_stack: Vec::new(),
            thread_count: threads,
            extra_keys: Vec::new(),
        };
        // Node 0: the session root; nodes 1..=T: the thread roots.
        b.new_node(0, 0);
        b.nodes[0].executions = 1;
        for t in 1..=threads {
            b.extra_keys.push(format!("thread {t}"));
            b.new_node(0, u32::MAX - (t as u32 - 1));
            b.steps[0].push(Step::new(StepKind::Read {
                node: t as u32,
                hit: false,
            }));
        }
        b
    }

    fn new_node(&mut self, name: u32, key: u32) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            name,
            key,
            first_step: 0,
            step_count: 0,
            executions: 0,
        });
        self.steps.push(Vec::new());
        self.on_stack.push(false);
        id
    }

    fn node(&mut self, name: u32, key: u32) -> u32 {
        if let Some(&id) = self.index.get(&(name, key)) {
            return id;
        }
        let id = self.new_node(name, key);
        self.index.insert((name, key), id);
        id
    }

    /// Walks one thread's events (see the module docs); `root` is its
    /// thread root's node.
    fn thread(&mut self, root: u32, mut ev: ThreadEvents, stats: &mut ProfileStats) {
        // Parents before children: by start, the longer first.
        ev.intervals
            .sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        ev.hits.sort_by_key(|h| h.at);
        let mut frames: Vec<Frame> = vec![Frame {
            kind: Kind::Other,
            end: u64::MAX,
            last: 0,
            begin: None,
            owns: true,
        }];
        let mut owners = vec![Owner {
            node: root,
            steps: Vec::new(),
            reads: 0,
        }];
        self.nodes[root as usize].executions = 1;
        let (mut ivs, mut hits) = (ev.intervals.iter().peekable(), ev.hits.iter().peekable());
        loop {
            let next_iv = ivs.peek().map(|i| i.start);
            let next_hit = hits.peek().map(|h| h.at);
            let t = match (next_iv, next_hit) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
            };
            // Close every frame that ended by `t`.
            while frames.len() > 1 && frames.last().expect("a frame").end <= t {
                self.close(&mut frames, &mut owners);
            }
            if next_iv == Some(t) {
                let iv = *ivs.next().expect("peeked");
                self.open(iv, &mut frames, &mut owners, stats);
            } else {
                let hit = *hits.next().expect("peeked");
                self.account(&mut frames, &mut owners, hit.at);
                let node = self.node(hit.name, hit.key);
                let owner = owners.last_mut().expect("the thread root");
                if self.on_stack[node as usize] {
                    stats.dropped_hits += 1;
                } else {
                    owner
                        .steps
                        .push(Step::new(StepKind::Read { node, hit: true }));
                    owner.reads += 1;
                }
            }
        }
        while frames.len() > 1 {
            self.close(&mut frames, &mut owners);
        }
        let root_owner = owners.pop().expect("the thread root");
        self.steps[root as usize] = root_owner.steps;
    }

    /// Accounts the innermost frame's own time up to `t` as work of the
    /// innermost owner (blocked time and the thread root's gaps are not work).
    fn account(&mut self, frames: &mut [Frame], owners: &mut [Owner], t: u64) {
        let depth = frames.len();
        let top = frames.last_mut().expect("a frame");
        let own = t.saturating_sub(top.last);
        top.last = top.last.max(t);
        if depth > 1 && top.kind != Kind::Blocked {
            push_work(&mut owners.last_mut().expect("an owner").steps, own);
        }
    }

    fn open(
        &mut self,
        mut iv: Interval,
        frames: &mut Vec<Frame>,
        owners: &mut Vec<Owner>,
        stats: &mut ProfileStats,
    ) {
        self.account(frames, owners, iv.start);
        let parent_end = frames.last().expect("a frame").end;
        if iv.end > parent_end {
            iv.end = parent_end;
            stats.clipped_intervals += 1;
        }
        if frames.len() == 1 {
            stats.busy_ns += iv.end - iv.start;
        }
        let mut frame = Frame {
            kind: iv.kind,
            end: iv.end,
            last: iv.start,
            begin: None,
            owns: false,
        };
        match iv.kind {
            Kind::Query | Kind::Blocked => {
                let node = self.node(iv.name, iv.key);
                let owner = owners.last_mut().expect("an owner");
                if self.on_stack[node as usize] {
                    // A query that (by its printed key) reads itself: its
                    // time stays with the enclosing query.
                    if iv.kind == Kind::Blocked {
                        stats.dropped_hits += 1;
                    } else {
                        stats.folded_queries += 1;
                        frame.kind = Kind::Other;
                    }
                } else {
                    owner.steps.push(Step::new(StepKind::Read {
                        node,
                        hit: iv.kind == Kind::Blocked,
                    }));
                    owner.reads += 1;
                    if iv.kind == Kind::Query {
                        self.on_stack[node as usize] = true;
                        owners.push(Owner {
                            node,
                            steps: Vec::new(),
                            reads: 0,
                        });
                        frame.owns = true;
                    }
                }
                if iv.kind == Kind::Blocked {
                    // Outermost or not, blocked time is not busy time.
                    stats.blocked_ns += iv.end - iv.start;
                    stats.busy_ns -= iv.end - iv.start;
                }
            }
            Kind::Activity => {
                let owner = owners.last_mut().expect("an owner");
                frame.begin = Some((owner.steps.len(), owner.reads));
                owner.steps.push(Step::new(StepKind::Begin(iv.name)));
            }
            Kind::Other => {}
        }
        frames.push(frame);
    }

    fn close(&mut self, frames: &mut Vec<Frame>, owners: &mut Vec<Owner>) {
        let end = frames.last().expect("a frame").end;
        self.account(frames, owners, end);
        let frame = frames.pop().expect("a frame");
        let parent = frames.last_mut().expect("a parent frame");
        parent.last = parent.last.max(end);
        if let Some((at, reads)) = frame.begin {
            let owner = owners.last_mut().expect("an owner");
            if owner.reads == reads {
                // No read inside: drop the Begin, merge the work after it.
                let tail: u64 = owner.steps[at + 1..]
                    .iter()
                    .map(|s| match s.kind() {
                        StepKind::Work(ns) => ns,
                        _ => 0,
                    })
                    .sum();
                owner.steps.truncate(at);
                push_work(&mut owner.steps, tail);
            } else {
                owner.steps.push(Step::new(StepKind::End));
            }
        }
        if frame.owns && frame.kind == Kind::Query {
            let done = owners.pop().expect("the query's owner");
            self.on_stack[done.node as usize] = false;
            let node = &mut self.nodes[done.node as usize];
            node.executions += 1;
            let steps = &mut self.steps[done.node as usize];
            for s in done.steps {
                match s.kind() {
                    StepKind::Work(ns) => push_work(steps, ns),
                    _ => steps.push(s),
                }
            }
        }
    }

    fn finish(
        mut self,
        crate_name: String,
        names: Vec<String>,
        mut keys: Vec<String>,
        stats: ProfileStats,
    ) -> ReplayGraph {
        // Thread roots' keys were placeholders (`u32::MAX - t`).
        let base = keys.len() as u32;
        keys.append(&mut self.extra_keys);
        for t in 1..=self.thread_count {
            self.nodes[t].key = base + (t as u32 - 1);
        }
        let total: usize = self.steps.iter().map(Vec::len).sum();
        let mut steps = Vec::with_capacity(total);
        for (node, s) in self.nodes.iter_mut().zip(&self.steps) {
            node.first_step = steps.len() as u32;
            node.step_count = s.len() as u32;
            steps.extend_from_slice(s);
        }
        ReplayGraph {
            crate_name,
            names,
            keys,
            nodes: self.nodes,
            steps,
            stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use analyzeme::ProfilingDataBuilder;

    use super::*;

    /// An event id with the key as its argument, as rustc writes it.
    fn q(name: &str, key: &str) -> String {
        format!("{name}\u{1e}{key}")
    }

    fn find(g: &ReplayGraph, name: &str, key: &str) -> u32 {
        (0..g.nodes.len() as u32)
            .find(|&i| g.name_of(i) == name && g.key_of(i) == key)
            .unwrap_or_else(|| panic!("no node {name}({key})"))
    }

    fn kinds(g: &ReplayGraph, id: u32) -> Vec<StepKind> {
        g.steps_of(id).iter().map(|s| s.kind()).collect()
    }

    #[test]
    fn nesting_makes_reads_and_self_time() {
        let mut b = ProfilingDataBuilder::new();
        // analysis(()) [0, 100): activity type_check_crate [10, 60) with
        // typeck(a) [20, 30) and a hit on typeck(a) at 40; a hit on
        // crate_name(x) at 70 (never executed: a leaf).
        b.interval("Query", &q("analysis", "()"), 1, 0, 100, |b| {
            b.interval("GenericActivity", "type_check_crate", 1, 10, 60, |b| {
                b.interval("Query", &q("typeck", "a"), 1, 20, 30, |_| {});
                b.instant("QueryCacheHit", &q("typeck", "a"), 1, 40);
            });
            b.interval("GenericActivity", "no_reads_inside", 1, 62, 66, |_| {});
            b.instant("QueryCacheHit", &q("crate_name", "x"), 1, 70);
        });
        b.interval("GenericActivity", "top_level", 1, 100, 110, |_| {});
        b.integer("QueryCacheHitCount", &q("typeck", "a"), 1, 1);
        b.integer("QueryCacheHitCount", &q("crate_name", "x"), 1, 1);
        let g = from_profiling_data(&b.into_profiling_data());
        g.validate().unwrap();
        let (analysis, typeck, leaf) = (
            find(&g, "analysis", "()"),
            find(&g, "typeck", "a"),
            find(&g, "crate_name", "x"),
        );
        let names = |s: &str| g.names.iter().position(|n| n == s).unwrap() as u32;
        assert_eq!(
            kinds(&g, analysis),
            vec![
                StepKind::Work(10),
                StepKind::Begin(names("type_check_crate")),
                StepKind::Work(10),
                StepKind::Read {
                    node: typeck,
                    hit: false
                },
                StepKind::Work(10),
                StepKind::Read {
                    node: typeck,
                    hit: true
                },
                StepKind::Work(20),
                StepKind::End,
                // 60..70, the empty activity included, merged.
                StepKind::Work(10),
                StepKind::Read {
                    node: leaf,
                    hit: true
                },
                StepKind::Work(30),
            ]
        );
        assert_eq!(kinds(&g, typeck), vec![StepKind::Work(10)]);
        assert_eq!(g.nodes[leaf as usize].executions, 0);
        // The thread root: analysis, then the top-level activity's 10 ns.
        assert_eq!(
            kinds(&g, 1),
            vec![
                StepKind::Read {
                    node: analysis,
                    hit: false
                },
                StepKind::Work(10)
            ]
        );
        let c = g.counts();
        assert_eq!((c.work_ns, g.stats.busy_ns), (110, 110));
        assert_eq!((g.stats.query_events, g.stats.hit_events), (2, 2));
        assert_eq!(g.stats.hit_counter_total, 2);
        assert!(crate::replay::check_graph(&g, 1.0).iter().all(|c| c.ok));
    }

    #[test]
    fn threads_get_roots_and_blocked_time_is_not_work() {
        let mut b = ProfilingDataBuilder::new();
        b.interval("Query", &q("typeck", "a"), 1, 0, 50, |_| {});
        b.interval("Query", &q("typeck", "b"), 2, 0, 100, |b| {
            // Waits 40 ns for typeck(a) on thread 1: a read, not work.
            b.interval("QueryBlocked", &q("typeck", "a"), 2, 10, 50, |_| {});
        });
        let g = from_profiling_data(&b.into_profiling_data());
        g.validate().unwrap();
        assert_eq!(g.stats.threads, 2);
        assert_eq!(
            kinds(&g, 0),
            vec![
                StepKind::Read {
                    node: 1,
                    hit: false
                },
                StepKind::Read {
                    node: 2,
                    hit: false
                }
            ]
        );
        let (a, b) = (find(&g, "typeck", "a"), find(&g, "typeck", "b"));
        assert_eq!(
            kinds(&g, b),
            vec![
                StepKind::Work(10),
                StepKind::Read { node: a, hit: true },
                StepKind::Work(50)
            ]
        );
        assert_eq!((g.stats.busy_ns, g.stats.blocked_ns), (110, 40));
        assert_eq!(g.counts().work_ns, 110);
        assert!(crate::replay::check_graph(&g, 1.0).iter().all(|c| c.ok));
    }

    #[test]
    fn keys_that_print_alike_never_make_a_cycle() {
        let mut b = ProfilingDataBuilder::new();
        // f(k) nests an execution of "f(k)" (another key, printed alike),
        // and hits itself.
        b.interval("Query", &q("f", "k"), 1, 0, 100, |b| {
            b.interval("Query", &q("f", "k"), 1, 10, 20, |_| {});
            b.instant("QueryCacheHit", &q("f", "k"), 1, 30);
        });
        // g(1) reads h(1), which reads g(1) from the cache; then g(1)
        // executes again (a second key printed alike) and reads h(1).
        b.interval("Query", &q("g", "1"), 1, 100, 110, |_| {});
        b.interval("Query", &q("h", "1"), 1, 110, 130, |b| {
            b.instant("QueryCacheHit", &q("g", "1"), 1, 120);
        });
        b.interval("Query", &q("g", "1"), 1, 130, 140, |b| {
            b.instant("QueryCacheHit", &q("h", "1"), 1, 135);
        });
        b.integer("QueryCacheHitCount", &q("f", "k"), 1, 3);
        let g = from_profiling_data(&b.into_profiling_data());
        g.validate().unwrap();
        assert_eq!(g.stats.folded_queries, 1);
        assert_eq!(g.stats.dropped_hits, 2);
        assert_eq!(g.counts().work_ns, 140);
        assert!(crate::replay::check_graph(&g, 1.0).iter().all(|c| c.ok));
    }

    #[test]
    fn converted_format_round_trips() {
        let mut b = ProfilingDataBuilder::new();
        b.interval("Query", &q("analysis", "()"), 1, 0, 100, |b| {
            b.interval("Query", &q("typeck", "a"), 1, 20, 30, |_| {});
        });
        let g = from_profiling_data(&b.into_profiling_data());
        let dir = std::env::temp_dir().join(format!("weft-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("g.bin");
        g.export(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let back = ReplayGraph::import(&bytes).unwrap();
        assert_eq!(back.steps, g.steps);
        assert_eq!(back.keys, g.keys);
        assert_eq!(back.stats, g.stats);
        assert!(ReplayGraph::import(&bytes[..bytes.len() / 2]).is_err());
        assert!(ReplayGraph::import(b"WEFTRPG1 not gzip").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
