//! Per-worker timelines of a [`Profile`]: the slices the trace and the
//! picture draw, and the worker statistics derived from them.
//!
//! An execution becomes one or more *segments* on its worker's track: it is
//! cut at each of its waits, because a suspended fiber's worker runs other
//! fibers meanwhile. A blocking wait (threads mode) is a slice of its own.
//! [`nest`] then makes the slices of a track properly nested (two slices
//! are disjoint or one contains the other), which the trace format needs:
//! a slice that starts inside another and ends after it is split at the
//! other's end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use weft_runtime::trace::{Event, ThreadEvents};

use super::{Profile, WorkerStats};

/// What a slice shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SliceKind {
    /// Segment `segment` of execution `execs[exec]`.
    Exec { exec: usize, segment: usize },
    /// A blocking wait: wait `wait` of execution `execs[exec]`.
    Wait { exec: usize, wait: usize },
}

/// A slice on one track, in ns of the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Slice {
    pub(crate) track: usize,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) kind: SliceKind,
    /// Which piece of the original slice this is, after [`nest`] split it.
    pub(crate) part: usize,
}

/// The track of a worker: its index; code outside any pool gets the track
/// after the last worker.
pub(crate) fn track_of(profile: &Profile, worker: Option<usize>) -> usize {
    worker.unwrap_or(profile.workers)
}

/// Number of tracks: the workers, plus one when some execution ran outside
/// any pool.
pub(crate) fn track_count(profile: &Profile) -> usize {
    let outside = profile.execs.iter().any(|e| e.worker.is_none());
    let max_worker = profile
        .execs
        .iter()
        .filter_map(|e| e.worker)
        .max()
        .map_or(0, |w| w + 1);
    profile.workers.max(max_worker) + usize::from(outside)
}

/// Every execution segment and blocking wait, properly nested per track,
/// sorted by (track, start, longest first).
pub(crate) fn slices(profile: &Profile) -> Vec<Slice> {
    let mut raw = Vec::new();
    for (i, e) in profile.execs.iter().enumerate() {
        let track = track_of(profile, e.worker);
        let mut at = e.start_ns;
        let mut segment = 0;
        let mut waits: Vec<(usize, &super::WaitRecord)> = e.waits.iter().enumerate().collect();
        waits.sort_by_key(|(_, w)| w.start_ns);
        for (wi, w) in waits {
            let (ws, we) = (w.start_ns.clamp(at, e.end_ns), w.end_ns.clamp(at, e.end_ns));
            if ws > at {
                raw.push(Slice {
                    track,
                    start: at,
                    end: ws,
                    kind: SliceKind::Exec { exec: i, segment },
                    part: 0,
                });
                segment += 1;
            }
            if w.blocking && we > ws {
                raw.push(Slice {
                    track: track_of(profile, w.worker),
                    start: ws,
                    end: we,
                    kind: SliceKind::Wait { exec: i, wait: wi },
                    part: 0,
                });
            }
            at = at.max(we);
        }
        if e.end_ns > at || segment == 0 {
            raw.push(Slice {
                track,
                start: at,
                end: e.end_ns.max(at),
                kind: SliceKind::Exec { exec: i, segment },
                part: 0,
            });
        }
    }
    nest(raw)
}

/// The sweep order of slices as a max-heap key: by track, start, longest
/// first.
type SweepKey = Reverse<(usize, u64, Reverse<u64>, SliceKind, usize)>;

/// Splits slices so that on every track any two are disjoint or nested.
pub(crate) fn nest(raw: Vec<Slice>) -> Vec<Slice> {
    // Min-heap by (track, start, longest first, kind): the sweep order.
    let key =
        |s: &Slice| -> SweepKey { Reverse((s.track, s.start, Reverse(s.end), s.kind, s.part)) };
    let mut heap: BinaryHeap<(SweepKey, Slice)> = raw.into_iter().map(|s| (key(&s), s)).collect();
    let mut out = Vec::new();
    let mut stack: Vec<Slice> = Vec::new();
    while let Some((_, s)) = heap.pop() {
        while let Some(top) = stack.last() {
            if top.track != s.track || top.end <= s.start {
                stack.pop();
            } else {
                break;
            }
        }
        match stack.last() {
            Some(top) if s.end > top.end => {
                // Starts inside `top` but outlives it: keep the part inside,
                // sweep the rest again.
                let rest = Slice {
                    start: top.end,
                    part: s.part + 1,
                    ..s
                };
                let inside = Slice { end: top.end, ..s };
                heap.push((key(&rest), rest));
                if inside.end > inside.start {
                    out.push(inside);
                    stack.push(inside);
                }
            }
            _ => {
                out.push(s);
                stack.push(s);
            }
        }
    }
    out
}

/// The innermost slice at every instant of every track: disjoint
/// `(start, end, index into slices)` runs, sorted by track and time.
pub(crate) fn exclusive(slices: &[Slice]) -> Vec<(u64, u64, usize)> {
    fn emit(out: &mut Vec<(u64, u64, usize)>, from: u64, to: u64, i: usize) {
        if to > from {
            out.push((from, to, i));
        }
    }
    let mut out = Vec::new();
    // `slices` is in sweep order (track, start, longest first) and properly
    // nested, so the open slices form a stack whose top is the innermost.
    let mut stack: Vec<usize> = Vec::new();
    let mut cursor = 0u64;
    for (i, s) in slices.iter().enumerate() {
        while let Some(&top) = stack.last() {
            let t = &slices[top];
            if t.track == s.track && t.end > s.start {
                break;
            }
            emit(&mut out, cursor, t.end, top);
            cursor = cursor.max(t.end);
            stack.pop();
        }
        if let Some(&top) = stack.last() {
            emit(&mut out, cursor, s.start, top);
        }
        cursor = s.start;
        stack.push(i);
    }
    while let Some(top) = stack.pop() {
        emit(&mut out, cursor, slices[top].end, top);
        cursor = cursor.max(slices[top].end);
    }
    out
}

/// Sorted, disjoint union of intervals.
fn union(mut v: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    v.retain(|(s, e)| e > s);
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

fn measure(v: &[(u64, u64)]) -> u64 {
    v.iter().map(|(s, e)| e - s).sum()
}

/// Length of `a` minus its overlap with `b` (both sorted and disjoint).
fn measure_minus(a: &[(u64, u64)], b: &[(u64, u64)]) -> u64 {
    let mut overlap = 0;
    let mut j = 0;
    for &(s, e) in a {
        while j < b.len() && b[j].1 <= s {
            j += 1;
        }
        let mut k = j;
        while k < b.len() && b[k].0 < e {
            overlap += b[k].1.min(e) - b[k].0.max(s);
            k += 1;
        }
    }
    measure(a) - overlap
}

/// Worker statistics for `profile` over `[start_ns, start_ns + wall_ns]`:
/// busy and waiting time from the runtime's `events` where a worker has
/// any, else from the executions (busy = inside a provider, waiting = in a
/// query wait and not busy).
pub(crate) fn worker_stats(profile: &Profile, events: &[ThreadEvents]) -> Vec<WorkerStats> {
    let (t0, t1) = (profile.start_ns, profile.start_ns + profile.wall_ns);
    let all = slices(profile);
    let excl = exclusive(&all);
    let mut stats: Vec<WorkerStats> = (0..profile.workers.max(1))
        .map(|w| WorkerStats {
            worker: w,
            ..WorkerStats::default()
        })
        .collect();
    for e in &profile.execs {
        if let Some(s) = e.worker.and_then(|w| stats.get_mut(w)) {
            s.executions += 1;
        }
    }
    for s in stats.iter_mut() {
        let w = s.worker;
        let mine: Vec<&ThreadEvents> = events.iter().filter(|t| t.worker == Some(w)).collect();
        let waits = union(
            profile
                .execs
                .iter()
                .flat_map(|e| e.waits.iter())
                .filter(|x| x.worker == Some(w))
                .map(|x| (x.start_ns.max(t0), x.end_ns.min(t1)))
                .collect(),
        );
        // Fork events alone (serial mode) say nothing about busy time.
        let scheduled = mine.iter().any(|t| {
            t.events
                .iter()
                .any(|e| !matches!(e.event, Event::Fork { .. }))
        });
        let (busy, mut waiting) = if !scheduled {
            let busy = union(
                excl.iter()
                    .filter(|(_, _, i)| {
                        all[*i].track == w && matches!(all[*i].kind, SliceKind::Exec { .. })
                    })
                    .map(|&(a, b, _)| (a.max(t0), b.min(t1)))
                    .collect(),
            );
            (busy, Vec::new())
        } else {
            let mut evs: Vec<_> = mine.iter().flat_map(|t| t.events.iter().copied()).collect();
            evs.sort_by_key(|e| e.at_ns);
            let (mut busy, mut waiting) = (Vec::new(), Vec::new());
            let (mut active, mut blocked, mut suspended) = (false, false, 0i64);
            let mut prev = t0;
            for ev in evs {
                let at = ev.at_ns.clamp(t0, t1);
                if at > prev {
                    if blocked || (!active && suspended > 0) {
                        waiting.push((prev, at));
                    } else if active {
                        busy.push((prev, at));
                    }
                }
                prev = prev.max(at);
                match ev.event {
                    Event::TaskStart { .. } => active = true,
                    Event::TaskEnd { .. } => active = false,
                    Event::Suspend { .. } => {
                        active = false;
                        suspended += 1;
                        s.suspends += 1;
                    }
                    Event::Resume { .. } => {
                        active = true;
                        suspended = (suspended - 1).max(0);
                        s.resumes += 1;
                    }
                    Event::BlockStart => blocked = true,
                    Event::BlockEnd => blocked = false,
                    Event::Steal { .. } => s.steals += 1,
                    Event::Park => s.parks += 1,
                    Event::Unpark | Event::Fork { .. } => {}
                }
            }
            if t1 > prev && active && !blocked {
                busy.push((prev, t1));
            }
            (union(busy), waiting)
        };
        waiting.extend(waits);
        let waiting = union(waiting);
        s.busy_ns = measure(&busy);
        s.waiting_ns = measure_minus(&waiting, &busy);
        s.idle_ns = (t1 - t0).saturating_sub(s.busy_ns + s.waiting_ns);
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::super::tests::{diamond, exec};
    use super::super::WaitRecord;
    use super::*;

    fn is_nested(v: &[Slice]) -> bool {
        v.iter().all(|a| {
            v.iter().all(|b| {
                a.track != b.track
                    || a.end <= b.start
                    || b.end <= a.start
                    || (a.start <= b.start && b.end <= a.end)
                    || (b.start <= a.start && a.end <= b.end)
            })
        })
    }

    #[test]
    fn partial_overlaps_are_split() {
        let s = |start, end, exec| Slice {
            track: 0,
            start,
            end,
            kind: SliceKind::Exec { exec, segment: 0 },
            part: 0,
        };
        let out = nest(vec![s(0, 10, 0), s(5, 15, 1), s(12, 13, 2)]);
        assert!(is_nested(&out), "{out:?}");
        assert_eq!(out.iter().filter(|x| x.kind == s(0, 0, 1).kind).count(), 2);
        let ex = exclusive(&out);
        let total: u64 = ex.iter().map(|(a, b, _)| b - a).sum();
        assert_eq!(total, 15);
        assert!(ex.windows(2).all(|w| w[0].1 <= w[1].0), "{ex:?}");
    }

    #[test]
    fn waits_cut_segments() {
        let mut p = diamond();
        p.workers = 1;
        p.execs = vec![exec(1, "a", 0, 100, 40, &[]), exec(2, "b", 10, 20, 10, &[])];
        p.execs[0].waits.push(WaitRecord {
            on_exec: 9,
            start_ns: 30,
            end_ns: 80,
            worker: Some(0),
            blocking: true,
        });
        p.wall_ns = 100;
        let v = slices(&p);
        assert!(is_nested(&v));
        // a: [0,30) and [80,100); the wait [30,80); b nested in a's first segment.
        assert_eq!(v.len(), 4, "{v:?}");
        let st = worker_stats(&p, &[]);
        assert_eq!(st[0].busy_ns, 50);
        assert_eq!(st[0].waiting_ns, 50);
        assert_eq!(st[0].idle_ns, 0);
    }
}
