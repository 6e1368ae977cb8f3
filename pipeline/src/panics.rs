//! `callees(fn)`, `panic_graph(crate)` and `may_panic(fn)`.
//!
//! A function may panic when its body has a direct panic site (see
//! `item_tree::PanicSite`) or it calls, by a resolved path, a function that may
//! panic. Recursion is handled without query cycles: `panic_graph` computes the
//! crate's call graph, its strongly connected components (Tarjan, iterative),
//! and then the shortest distance to a panic site per function, component by
//! component in reverse topological order (callees first); inside a component
//! it runs Dijkstra over the component's edges, seeded from panic sites and
//! from calls that leave the component (whose distances are final). Calls into
//! another analyzed crate use that crate's `may_panic`.
//!
//! The witness of a function is the chain that starts with a step of minimal
//! distance, ties broken by source position (a panic site before a call at the
//! same position); each step strictly decreases the distance, so the chain
//! ends at a panic site. It depends only on the analyzed code, never on timing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use weft_queries::query;

use crate::crate_graph::CrateId;
use crate::db::{Cx, Db, DefId};
use crate::def_map::{describe_crate, DefKind, DefMap, DefMapQuery, Ns, PathRes};
use crate::item_tree::Pos;

/// The `callees(fn)` query: functions called by resolved paths, in source order.
#[query(describe = describe_def)]
pub fn callees(cx: &Cx<'_>, f: DefId) -> Arc<[(DefId, Pos)]> {
    let map = cx.def_map(f.krate);
    let def = map.def(f);
    let DefKind::Fn { body, self_ty, .. } = &def.kind else {
        return Arc::from(Vec::new());
    };
    let mut out = Vec::new();
    for call in &body.calls {
        let segs = &call.path.segments;
        let res = match (segs.first().map(|s| &**s), self_ty) {
            (Some("Self"), Some(ty)) if segs.len() == 2 => map.assoc_fn(*ty, &segs[1]),
            (Some("Self"), _) => PathRes::Unresolved,
            _ => map.resolve_path(def.module, &call.path, Ns::Values, false),
        };
        if let PathRes::Def(d) = res {
            if matches!(map.def(d).kind, DefKind::Fn { .. }) {
                out.push((d, call.pos));
            }
        }
    }
    Arc::from(out)
}

/// How profiles name a function key (as `Db::def_label`).
fn describe_def(db: &Db, f: &DefId) -> String {
    db.def_label(*f)
}

/// The next step of a witness chain.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// The `i`th direct panic site of the body.
    Site(usize),
    /// A function of the same crate.
    Local(u32),
    /// A function of another crate.
    Extern(DefId),
}

/// Per crate: for each function that may panic, its distance and next step.
#[derive(Debug, Default)]
pub struct PanicGraph {
    info: FxHashMap<u32, (u32, Next)>,
}

/// The `panic_graph(crate)` query.
#[query(describe = describe_crate)]
pub fn panic_graph(cx: &Cx<'_>, krate: CrateId) -> Arc<PanicGraph> {
    Arc::new(build_panic_graph(cx, krate))
}

/// Steps kept at the end of every witness node ([`Witness::tail`]).
pub const WITNESS_TAIL: usize = 5;

/// A witness: functions from the one asked about to the one with the panic
/// site (crate-qualified paths), then the site — as a linked list whose
/// rest is the witness of the next function. Witnesses share their rest,
/// so the witnesses of a call chain of `N` functions take O(N) memory, not
/// O(N²).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// A crate-qualified function path, or, last, the site
    /// (`panic! at src/lib.rs:3:5`).
    pub step: Arc<str>,
    /// The rest of the chain; `None` after the site.
    pub next: Option<Arc<Witness>>,
    /// Steps from here to the site, both included.
    pub len: usize,
    /// The last `min(len, WITNESS_TAIL)` steps (shared with the rest).
    pub tail: Arc<[Arc<str>]>,
}

impl Witness {
    /// The last step, a site.
    fn site(step: Arc<str>) -> Witness {
        Witness {
            tail: Arc::from([step.clone()]),
            step,
            next: None,
            len: 1,
        }
    }

    /// `step`, then `rest`.
    fn then(step: Arc<str>, rest: Arc<Witness>) -> Witness {
        let tail = if rest.len >= WITNESS_TAIL {
            rest.tail.clone()
        } else {
            std::iter::once(step.clone())
                .chain(rest.tail.iter().cloned())
                .collect()
        };
        Witness {
            step,
            len: rest.len + 1,
            next: Some(rest),
            tail,
        }
    }

    /// Every step, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Arc<str>> {
        std::iter::successors(Some(self), |w| w.next.as_deref()).map(|w| &w.step)
    }
}

/// The `may_panic(fn)` query: a witness when `fn` may panic.
#[query(describe = describe_def)]
pub fn may_panic(cx: &Cx<'_>, f: DefId) -> Option<Arc<Witness>> {
    let graph = cx.panic_graph(f.krate);
    let map = cx.def_map(f.krate);
    let (_, next) = *graph.info.get(&f.index)?;
    // The rest is the next function's witness (a query: memoized, so a
    // call chain is walked once, not once per function on it; the steps
    // strictly approach a site, so this recursion has no cycle).
    let rest = match next {
        Next::Site(i) => {
            let def = &map.defs[f.index as usize];
            let DefKind::Fn { body, .. } = &def.kind else {
                return None;
            };
            let site = &body.panics[i];
            let file = cx.db().display_path(&map.files[def.file as usize].0);
            let text = format!(
                "{} at {}:{}:{}",
                site.what, file, site.pos.line, site.pos.col
            );
            Arc::new(Witness::site(Arc::from(text)))
        }
        Next::Local(g) => cx.may_panic(DefId {
            krate: f.krate,
            index: g,
        })?,
        Next::Extern(d) => cx.may_panic(d)?,
    };
    Some(Arc::new(Witness::then(qualified(cx, &map, f.index), rest)))
}

fn qualified(cx: &Cx<'_>, map: &DefMap, index: u32) -> Arc<str> {
    let name = &cx.db().graph.krate(map.krate).name;
    let path = &map.defs[index as usize].path;
    Arc::from(format!("{name}::{path}"))
}

fn build_panic_graph(cx: &Cx<'_>, krate: CrateId) -> PanicGraph {
    let map = cx.def_map(krate);
    let fns: Vec<u32> = map
        .defs
        .iter()
        .enumerate()
        .filter(|(_, d)| matches!(d.kind, DefKind::Fn { .. }))
        .map(|(i, _)| i as u32)
        .collect();
    let local: FxHashMap<u32, usize> = fns.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    let callees = weft_runtime::par_map(&fns, |_, f| cx.callees(DefId { krate, index: *f }));
    // Distances of calls into other crates (final: those crates are finished).
    let mut externs: Vec<DefId> = callees
        .iter()
        .flat_map(|c| c.iter().map(|(d, _)| *d))
        .filter(|d| d.krate != krate)
        .collect();
    externs.sort();
    externs.dedup();
    let ext_w = weft_runtime::par_map(&externs, |_, d| cx.may_panic(*d));
    let ext_dist: FxHashMap<DefId, u32> = externs
        .iter()
        .zip(ext_w)
        .filter_map(|(d, w)| w.map(|w| (*d, (w.len - 1) as u32)))
        .collect();

    let n = fns.len();
    let edges: Vec<Vec<usize>> = callees
        .iter()
        .map(|c| {
            c.iter()
                .filter(|(d, _)| d.krate == krate)
                .filter_map(|(d, _)| local.get(&d.index).copied())
                .collect()
        })
        .collect();
    let comps = tarjan(&edges);
    let mut comp_of = vec![0usize; n];
    for (ci, comp) in comps.iter().enumerate() {
        for &v in comp {
            comp_of[v] = ci;
        }
    }
    let has_sites: Vec<bool> = fns
        .iter()
        .map(|f| match &map.defs[*f as usize].kind {
            DefKind::Fn { body, .. } => !body.panics.is_empty(),
            _ => false,
        })
        .collect();
    let mut dist: Vec<Option<u32>> = vec![None; n];
    for (ci, comp) in comps.iter().enumerate() {
        let mut heap = BinaryHeap::new();
        for &v in comp {
            let mut best = has_sites[v].then_some(1u32);
            for (d, _) in callees[v].iter() {
                let cand = if d.krate != krate {
                    ext_dist.get(d).map(|x| x + 1)
                } else {
                    match local.get(&d.index) {
                        Some(&g) if comp_of[g] != ci => dist[g].map(|x| x + 1),
                        _ => None,
                    }
                };
                best = min_opt(best, cand);
            }
            dist[v] = best;
            if let Some(b) = best {
                heap.push(Reverse((b, v)));
            }
        }
        if comp.len() > 1 {
            let mut callers: FxHashMap<usize, Vec<usize>> = FxHashMap::default();
            for &v in comp {
                for &g in &edges[v] {
                    if comp_of[g] == ci {
                        callers.entry(g).or_default().push(v);
                    }
                }
            }
            while let Some(Reverse((d, v))) = heap.pop() {
                if dist[v] != Some(d) {
                    continue;
                }
                for &c in callers.get(&v).map(Vec::as_slice).unwrap_or(&[]) {
                    if dist[c].is_none_or(|x| x > d + 1) {
                        dist[c] = Some(d + 1);
                        heap.push(Reverse((d + 1, c)));
                    }
                }
            }
        }
    }

    // Choose each function's next step: minimal distance, then source order.
    let mut info = FxHashMap::default();
    for (v, f) in fns.iter().enumerate() {
        let Some(d) = dist[v] else { continue };
        let DefKind::Fn { body, .. } = &map.defs[*f as usize].kind else {
            continue;
        };
        let mut best: Option<(Pos, u8, Next)> = None;
        let mut offer = |pos: Pos, rank: u8, next: Next| {
            if best.is_none_or(|(p, r, _)| (pos, rank) < (p, r)) {
                best = Some((pos, rank, next));
            }
        };
        if d == 1 {
            if let Some(site) = body.panics.first() {
                offer(site.pos, 0, Next::Site(0));
            }
        }
        for (callee, pos) in callees[v].iter() {
            let cd = if callee.krate != krate {
                ext_dist.get(callee).copied()
            } else {
                local.get(&callee.index).and_then(|g| dist[*g])
            };
            if cd.map(|x| x + 1) == Some(d) {
                let next = if callee.krate != krate {
                    Next::Extern(*callee)
                } else {
                    Next::Local(callee.index)
                };
                offer(*pos, 1, next);
            }
        }
        if let Some((_, _, next)) = best {
            info.insert(*f, (d, next));
        }
    }
    PanicGraph { info }
}

fn min_opt(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Strongly connected components, callees before callers (Tarjan's order),
/// computed without recursion.
fn tarjan(edges: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = edges.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut comps = Vec::new();
    let mut next_index = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut ei)) = work.last_mut() {
            if *ei < edges[v].len() {
                let w = edges[v][*ei];
                *ei += 1;
                if index[w] == usize::MAX {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut comp = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        comp.push(w);
                        if w == v {
                            break;
                        }
                    }
                    comps.push(comp);
                }
            }
        }
    }
    comps
}

#[cfg(test)]
mod tests {
    use super::tarjan;

    #[test]
    fn tarjan_orders_callees_first() {
        // 0 -> 1 -> 2 -> 1, 2 -> 3
        let edges = vec![vec![1], vec![2], vec![1, 3], vec![]];
        let comps = tarjan(&edges);
        let mut sorted: Vec<Vec<usize>> = comps
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.sort();
                c
            })
            .collect();
        assert_eq!(sorted.remove(0), vec![3]);
        assert_eq!(sorted.remove(0), vec![1, 2]);
        assert_eq!(sorted.remove(0), vec![0]);
    }
}
