//! The layered DAG of the `layered` bench (issue 13's measuring stick):
//! `NODES` nodes in layers of `WIDTH`; each node of a layer but the first
//! reads `DEPS` seeded-random nodes of the layer below and does no other
//! work, so the figures are the engine's cost per query. The same graph
//! runs as a Weft query ([`node`](struct@node)) and on a plain `OnceLock`
//! memo peer ([`OnceMemo`]), which is the floor: what memoization costs
//! with no engine at all (no cycle detection, no waiting protocol, no
//! errors).

use std::sync::{Arc, OnceLock};

use weft_queries::{query, Cx};

/// Nodes in the graph.
pub const NODES: usize = 200_000;
/// Nodes per layer (so 200 layers).
pub const WIDTH: usize = 1_000;
/// Dependencies per node (outside the first layer).
pub const DEPS: usize = 3;

/// The graph: each node's dependencies (`u32` node ids, all in the layer
/// below; none for the first layer).
pub struct Layered {
    /// `deps[i]`: the nodes node `i` reads.
    pub deps: Vec<[u32; DEPS]>,
}

impl Layered {
    /// The graph for `seed` (splitmix64: the same graph on every machine).
    pub fn new(seed: u64) -> Layered {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let deps = (0..NODES)
            .map(|i| {
                let layer = i / WIDTH;
                if layer == 0 {
                    return [u32::MAX; DEPS];
                }
                let below = (layer - 1) * WIDTH;
                [(); DEPS].map(|_| (below + (next() % WIDTH as u64) as usize) as u32)
            })
            .collect();
        Layered { deps }
    }

    /// The entry points: every node that no node reads (the top layer,
    /// and the nodes below that no dependency picked), so that reading
    /// them computes all `NODES` nodes.
    pub fn top(&self) -> Vec<u32> {
        let mut read = vec![false; NODES];
        for deps in &self.deps {
            for &d in deps.iter().filter(|&&d| d != u32::MAX) {
                read[d as usize] = true;
            }
        }
        (0..NODES as u32).filter(|&i| !read[i as usize]).collect()
    }

    /// The value of node `i` given its dependencies' values.
    #[inline]
    fn combine(i: u32, deps: impl Iterator<Item = u64>) -> u64 {
        deps.fold(u64::from(i), |acc, v| acc.rotate_left(5) ^ v)
    }
}

/// The Weft query: node `i`'s value from its dependencies' (stored
/// densely: `i` is its index).
#[query(dense)]
pub fn node(cx: &Cx<Arc<Layered>>, i: u32) -> u64 {
    let deps = &cx.db().deps[i as usize];
    if deps[0] == u32::MAX {
        return u64::from(i);
    }
    Layered::combine(i, deps.iter().map(|&d| cx.node(d)))
}

/// The `OnceLock` peer: one cell per node, filled by plain recursion
/// (`OnceLock` blocks a second thread that reaches a cell being filled).
pub struct OnceMemo<'g> {
    graph: &'g Layered,
    cells: Vec<OnceLock<u64>>,
}

impl<'g> OnceMemo<'g> {
    /// Empty cells for `graph`.
    pub fn new(graph: &'g Layered) -> OnceMemo<'g> {
        OnceMemo {
            graph,
            cells: (0..NODES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Node `i`'s value, computed once.
    pub fn get(&self, i: u32) -> u64 {
        *self.cells[i as usize].get_or_init(|| {
            let deps = &self.graph.deps[i as usize];
            if deps[0] == u32::MAX {
                return u64::from(i);
            }
            Layered::combine(i, deps.iter().map(|&d| self.get(d)))
        })
    }
}
