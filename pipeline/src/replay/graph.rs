//! The replay graph: the query executions of one rustc self-profile as a
//! DAG, and its converted file format (`weft replay PROFILE --export`).
//!
//! A node is one query (rustc's query name and key text, as the profiler
//! printed them); its *steps* are what its provider did, in recorded order:
//! spin for some self time ([`StepKind::Work`]), read another node
//! ([`StepKind::Read`]: a miss, nested execution, or a cache hit), and the
//! bounds of the non-query activities that contained reads
//! ([`StepKind::Begin`]/[`StepKind::End`], e.g. rustc's `MIR_borrow_checking`), which
//! the `sites` policy turns into parallel loops. Node 0 is the session root;
//! it reads one *thread root* per profiled thread, whose steps are that
//! thread's top-level activity and queries.
//!
//! The converted format is the graph serialized with `postcard` (serde) and
//! compressed with `flate2` (gzip): about 15× smaller than the raw profile,
//! since the profile stores every cache hit as a timestamped event.

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The query name of the session root and of the per-thread roots.
pub const SESSION: &str = "<session>";

/// The magic first bytes of a converted graph, before the gzip stream;
/// bumped with every change of the layout.
const MAGIC: &[u8; 8] = b"WEFTRPG1";

/// One step of a node's provider, packed in 64 bits: a 3-bit tag and a
/// 61-bit payload (nanoseconds, a node index or an activity name index).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Step(u64);

/// A [`Step`], unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Spin for this many nanoseconds of recorded self time.
    Work(u64),
    /// Read node `node`; `hit` when rustc found it in its cache (a
    /// `QueryCacheHit` event, or a wait on another thread), else the read
    /// executed it (a nested `Query` interval).
    Read {
        /// The node read.
        node: u32,
        /// Whether rustc's read was a cache hit.
        hit: bool,
    },
    /// A non-query activity begins (index into [`ReplayGraph::names`]).
    Begin(u32),
    /// The innermost open activity ends.
    End,
}

const TAG_SHIFT: u32 = 61;
const PAYLOAD: u64 = (1 << TAG_SHIFT) - 1;

impl Step {
    /// Packs `kind`; nanoseconds saturate at 2⁶¹ − 1 (73 years).
    pub fn new(kind: StepKind) -> Step {
        let (tag, payload) = match kind {
            StepKind::Work(ns) => (0, ns.min(PAYLOAD)),
            StepKind::Read { node, hit: false } => (1, u64::from(node)),
            StepKind::Read { node, hit: true } => (2, u64::from(node)),
            StepKind::Begin(name) => (3, u64::from(name)),
            StepKind::End => (4, 0),
        };
        Step((tag << TAG_SHIFT) | payload)
    }

    /// Unpacks the step.
    pub fn kind(self) -> StepKind {
        let payload = self.0 & PAYLOAD;
        match self.0 >> TAG_SHIFT {
            0 => StepKind::Work(payload),
            // Payloads of tags 1–3 were written from a u32.
            1 => StepKind::Read {
                node: payload as u32,
                hit: false,
            },
            2 => StepKind::Read {
                node: payload as u32,
                hit: true,
            },
            3 => StepKind::Begin(payload as u32),
            _ => StepKind::End,
        }
    }
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind().fmt(f)
    }
}

/// One query of the graph.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    /// Query name, an index into [`ReplayGraph::names`].
    pub name: u32,
    /// Key text, an index into [`ReplayGraph::keys`].
    pub key: u32,
    /// First step, an index into [`ReplayGraph::steps`].
    pub first_step: u32,
    /// Number of steps.
    pub step_count: u32,
    /// How many `Query` intervals rustc recorded for this node: 1, 0 for a
    /// node only ever read from the cache (fed, or loaded from a dependency
    /// before recording began), more when one name and key text executed
    /// twice (two keys that print alike).
    pub executions: u32,
}

/// The event counts and times of the profile the graph came from, kept in
/// the converted file so that `--check` works without the profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStats {
    /// `Query` intervals (provider executions).
    pub query_events: u64,
    /// `QueryCacheHit` instants.
    pub hit_events: u64,
    /// The sum of the `QueryCacheHitCount` counters: rustc's own count of
    /// the hits, which equals `hit_events` when every hit was recorded.
    pub hit_counter_total: u64,
    /// `QueryBlocked` intervals (a thread waited for a query running on
    /// another one; only in `-Zthreads` profiles).
    pub blocked_events: u64,
    /// Other intervals (activities, incremental hashing, ...).
    pub activity_events: u64,
    /// Threads that recorded events.
    pub threads: u32,
    /// Summed busy time in nanoseconds: for each thread, the length of its
    /// outermost intervals, less the time it was blocked.
    pub busy_ns: u64,
    /// Nanoseconds spent in `QueryBlocked` intervals.
    pub blocked_ns: u64,
    /// Intervals that overlapped an enclosing one without nesting in it
    /// (clipped to the enclosing interval).
    pub clipped_intervals: u64,
    /// `Query` intervals of a node nested in an execution of the same
    /// node (two keys that print alike): their time is the caller's.
    pub folded_queries: u64,
    /// Miss reads dropped to keep the graph acyclic (see `folded_queries`).
    pub dropped_misses: u64,
    /// Hit reads dropped to keep the graph acyclic: a hit on a node still
    /// on the stack, or a read closing a cycle through a node that
    /// executed twice.
    pub dropped_hits: u64,
    /// Wall time of the profiled session: first event to last, ns.
    pub session_ns: u64,
}

/// A replayable query graph (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplayGraph {
    /// The crate the profile was recorded for (rustc's `--crate-name`).
    pub crate_name: String,
    /// Query and activity names; `names[0]` is [`SESSION`].
    pub names: Vec<String>,
    /// Key texts, each stored once.
    pub keys: Vec<String>,
    /// The nodes; node 0 is the session root.
    pub nodes: Vec<Node>,
    /// Every node's steps, node after node.
    pub steps: Vec<Step>,
    /// What the profile recorded.
    pub stats: ProfileStats,
}

/// Counts of a graph's contents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphCounts {
    /// Nodes, the roots included.
    pub nodes: u64,
    /// Summed `executions` of the nodes.
    pub executions: u64,
    /// Reads that were misses (nested executions).
    pub miss_reads: u64,
    /// Reads that were cache hits.
    pub hit_reads: u64,
    /// Summed work, ns (unscaled): `T1`.
    pub work_ns: u64,
}

impl ReplayGraph {
    /// The steps of node `id`.
    ///
    /// # Panics
    ///
    /// When `id` is not a node of the graph.
    pub fn steps_of(&self, id: u32) -> &[Step] {
        let n = &self.nodes[id as usize];
        &self.steps[n.first_step as usize..][..n.step_count as usize]
    }

    /// The query name of node `id`.
    pub fn name_of(&self, id: u32) -> &str {
        &self.names[self.nodes[id as usize].name as usize]
    }

    /// The key text of node `id`.
    pub fn key_of(&self, id: u32) -> &str {
        &self.keys[self.nodes[id as usize].key as usize]
    }

    /// Counts of nodes, executions, reads and work.
    pub fn counts(&self) -> GraphCounts {
        let mut c = GraphCounts {
            nodes: self.nodes.len() as u64,
            executions: self.nodes.iter().map(|n| u64::from(n.executions)).sum(),
            ..GraphCounts::default()
        };
        for s in &self.steps {
            match s.kind() {
                StepKind::Work(ns) => c.work_ns += ns,
                StepKind::Read { hit: false, .. } => c.miss_reads += 1,
                StepKind::Read { hit: true, .. } => c.hit_reads += 1,
                StepKind::Begin(_) | StepKind::End => {}
            }
        }
        c
    }

    /// Checks the invariants replay relies on: node 0 exists, step ranges
    /// and name/key/node indices are in bounds, `Begin`/`End` pair up in
    /// every node, and every read goes to a node that finishes first (no
    /// cycle: node ids need not be topological, so this is a depth-first
    /// search).
    ///
    /// # Errors
    ///
    /// A message naming the first broken invariant.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.nodes.is_empty(), "the graph has no root node");
        anyhow::ensure!(
            u32::try_from(self.nodes.len()).is_ok(),
            "too many nodes ({})",
            self.nodes.len()
        );
        for (i, n) in self.nodes.iter().enumerate() {
            let end = u64::from(n.first_step) + u64::from(n.step_count);
            anyhow::ensure!(
                end <= self.steps.len() as u64,
                "node {i}: steps out of range"
            );
            anyhow::ensure!(
                (n.name as usize) < self.names.len() && (n.key as usize) < self.keys.len(),
                "node {i}: name or key out of range"
            );
            let mut depth = 0usize;
            for s in self.steps_of(i as u32) {
                match s.kind() {
                    StepKind::Read { node, .. } => anyhow::ensure!(
                        (node as usize) < self.nodes.len(),
                        "node {i}: read of node {node}, which does not exist"
                    ),
                    StepKind::Begin(name) => {
                        anyhow::ensure!(
                            (name as usize) < self.names.len(),
                            "node {i}: activity name out of range"
                        );
                        depth += 1;
                    }
                    StepKind::End => {
                        anyhow::ensure!(depth > 0, "node {i}: activity end without a begin");
                        depth -= 1;
                    }
                    StepKind::Work(_) => {}
                }
            }
            anyhow::ensure!(depth == 0, "node {i}: activity without an end");
        }
        if let Some(&i) = self.back_edges().first() {
            anyhow::bail!("the graph has a cycle (through step {i})");
        }
        Ok(())
    }

    /// The reads (as indices into [`steps`](Self::steps)) that a
    /// depth-first search from every node classifies as back edges:
    /// without them the graph is acyclic (iterative DFS).
    fn back_edges(&self) -> Vec<usize> {
        // 0 = unseen, 1 = on the stack, 2 = done.
        let mut color = vec![0u8; self.nodes.len()];
        let mut back = Vec::new();
        for start in 0..self.nodes.len() as u32 {
            if color[start as usize] != 0 {
                continue;
            }
            // (node, index of its next step to look at)
            let mut stack: Vec<(u32, usize)> = vec![(start, 0)];
            color[start as usize] = 1;
            while let Some(top) = stack.last_mut() {
                let n = &self.nodes[top.0 as usize];
                let end = (n.first_step + n.step_count) as usize;
                let at = (n.first_step as usize).max(top.1);
                let next =
                    (at..end).find(|&i| matches!(self.steps[i].kind(), StepKind::Read { .. }));
                let Some(i) = next else {
                    color[top.0 as usize] = 2;
                    stack.pop();
                    continue;
                };
                top.1 = i + 1;
                let StepKind::Read { node, .. } = self.steps[i].kind() else {
                    unreachable!("found a read")
                };
                match color[node as usize] {
                    0 => {
                        color[node as usize] = 1;
                        stack.push((node, 0));
                    }
                    1 => back.push(i),
                    _ => {}
                }
            }
        }
        back
    }

    /// Turns every back edge (see `back_edges`) into zero work, so that the
    /// graph is acyclic; returns how many miss reads and hit reads were
    /// dropped.
    pub fn drop_back_edges(&mut self) -> (u64, u64) {
        let (mut misses, mut hits) = (0, 0);
        for i in self.back_edges() {
            if let StepKind::Read { hit, .. } = self.steps[i].kind() {
                if hit {
                    hits += 1;
                } else {
                    misses += 1;
                }
            }
            self.steps[i] = Step::new(StepKind::Work(0));
        }
        (misses, hits)
    }

    /// Writes the converted format to `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn export(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = postcard::to_stdvec(self).context("serializing the replay graph")?;
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        w.write_all(MAGIC)?;
        let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::default());
        gz.write_all(&bytes)?;
        gz.finish()?.flush()?;
        Ok(())
    }

    /// Whether `bytes` start like a converted graph.
    pub fn is_converted(bytes: &[u8]) -> bool {
        bytes.starts_with(MAGIC)
    }

    /// Reads a converted graph from its bytes, and validates it.
    ///
    /// # Errors
    ///
    /// When the bytes are not a converted graph of this version, or the
    /// graph breaks an invariant (see [`validate`](Self::validate)).
    pub fn import(bytes: &[u8]) -> anyhow::Result<ReplayGraph> {
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .context("not a converted replay graph (no WEFTRPG1 header)")?;
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut raw)
            .context("the converted graph's gzip stream is damaged")?;
        let graph: ReplayGraph =
            postcard::from_bytes(&raw).context("the converted graph does not decode")?;
        graph.validate()?;
        Ok(graph)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip() {
        for kind in [
            StepKind::Work(0),
            StepKind::Work(123_456_789),
            StepKind::Read {
                node: u32::MAX,
                hit: false,
            },
            StepKind::Read { node: 7, hit: true },
            StepKind::Begin(3),
            StepKind::End,
        ] {
            assert_eq!(Step::new(kind).kind(), kind);
        }
        assert_eq!(
            Step::new(StepKind::Work(u64::MAX)).kind(),
            StepKind::Work(PAYLOAD)
        );
    }
}
