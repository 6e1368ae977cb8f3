//! Chrome trace-event JSON (the "JSON Object Format" that Perfetto and
//! `chrome://tracing` open) for a [`Profile`].
//!
//! - one track (`tid`) per worker, named `worker N`, plus `outside pool`
//!   when some execution ran on no worker;
//! - a complete event (`ph: "X"`) per execution segment, named by query
//!   kind, with `exec`, `key`, `self_us`, `segment` and `part` in its args
//!   (segments: an execution is cut at its waits; parts: see
//!   `timeline::nest`). Exactly one slice per execution has segment 0 and
//!   part 0;
//! - a blocking wait (threads mode) is a slice named `wait` (category
//!   `wait`); a fiber's wait is a `suspend` and a `resume` instant on the
//!   waiter's track plus an async slice (`ph: "b"/"e"`, category `wait`);
//! - every wait has a flow arrow (`ph: "s"/"f"`) from the end of the
//!   execution waited for to the point where the waiter continues;
//! - the runtime's steals, parks and unparks are instants (category
//!   `runtime`) on the worker's track.
//!
//! The top-level `"weft"` key holds the whole profile (executions with self
//! times, reads and waits; hits; worker statistics), which `weft simulate`
//! reads back; viewers ignore keys they do not know.

use std::io::{self, Write};

use weft_runtime::trace::Event;

use super::timeline::{self, SliceKind};
use super::Profile;

/// Writes `profile` as Chrome trace-event JSON (see the module doc).
///
/// # Errors
///
/// Any error of `out`.
pub fn write_chrome_trace(profile: &Profile, out: impl Write) -> io::Result<()> {
    let mut w = io::BufWriter::new(out);
    let t0 = profile.start_ns;
    let us = |t: u64| (t as f64 - t0 as f64) / 1000.0;
    let index = profile.index();
    let mut first = true;
    let mut event = |w: &mut io::BufWriter<_>, s: String| -> io::Result<()> {
        if !first {
            w.write_all(b",\n")?;
        }
        first = false;
        w.write_all(s.as_bytes())
    };
    writeln!(w, "{{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")?;
    event(
        &mut w,
        format!(
            "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":1,\"args\":{{\"name\":{}}}}}",
            json_str(&format!(
                "weft ({}, {} workers)",
                profile.mode, profile.workers
            ))
        ),
    )?;
    let tracks = timeline::track_count(profile);
    for t in 0..tracks {
        let name =
            if t < profile.workers.max(1) || profile.execs.iter().any(|e| e.worker == Some(t)) {
                format!("worker {t}")
            } else {
                "outside pool".to_owned()
            };
        event(
            &mut w,
            format!(
                "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":{t},\"args\":{{\"name\":{}}}}}",
                json_str(&name)
            ),
        )?;
        event(
            &mut w,
            format!("{{\"ph\":\"M\",\"name\":\"thread_sort_index\",\"pid\":1,\"tid\":{t},\"args\":{{\"sort_index\":{t}}}}}"),
        )?;
    }
    for s in timeline::slices(profile) {
        let (ts, dur) = (us(s.start), (s.end - s.start) as f64 / 1000.0);
        match s.kind {
            SliceKind::Exec { exec, segment } => {
                let e = &profile.execs[exec];
                event(
                    &mut w,
                    format!(
                        "{{\"ph\":\"X\",\"cat\":\"query\",\"name\":{},\"pid\":1,\"tid\":{},\"ts\":{ts:.3},\"dur\":{dur:.3},\"args\":{{\"exec\":{},\"key\":{},\"self_us\":{:.3},\"segment\":{segment},\"part\":{}}}}}",
                        json_str(e.query),
                        s.track,
                        e.exec,
                        json_str(&e.key),
                        e.self_ns as f64 / 1000.0,
                        s.part
                    ),
                )?;
            }
            SliceKind::Wait { exec, wait } => {
                let e = &profile.execs[exec];
                let on = e.waits[wait].on_exec;
                let (q, k) = index.get(&on).map_or(("?", ""), |&j| {
                    (profile.execs[j].query, profile.execs[j].key.as_str())
                });
                event(
                    &mut w,
                    format!(
                        "{{\"ph\":\"X\",\"cat\":\"wait\",\"name\":\"wait\",\"pid\":1,\"tid\":{},\"ts\":{ts:.3},\"dur\":{dur:.3},\"args\":{{\"exec\":{},\"on_exec\":{on},\"on_query\":{},\"on_key\":{},\"part\":{}}}}}",
                        s.track,
                        e.exec,
                        json_str(q),
                        json_str(k),
                        s.part
                    ),
                )?;
            }
        }
    }
    // The runtime's own events, where recorded in this process: steals and
    // parks as instants on the worker's track.
    for t in &profile.runtime_events {
        let Some(worker) = t.worker else { continue };
        for e in &t.events {
            let (name, args) = match e.event {
                Event::Steal { victim } => ("steal", format!("{{\"victim\":{victim}}}")),
                Event::Park => ("park", "{}".to_owned()),
                Event::Unpark => ("unpark", "{}".to_owned()),
                _ => continue,
            };
            event(
                &mut w,
                format!(
                    "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"runtime\",\"name\":\"{name}\",\"pid\":1,\"tid\":{worker},\"ts\":{:.3},\"args\":{args}}}",
                    us(e.at_ns)
                ),
            )?;
        }
    }
    let mut flow = 0u64;
    for e in &profile.execs {
        let track = timeline::track_of(profile, e.worker);
        for wt in &e.waits {
            flow += 1;
            let wtrack = timeline::track_of(profile, wt.worker);
            let target = index.get(&wt.on_exec).map(|&j| &profile.execs[j]);
            let q = target.map_or("?", |t| t.query);
            if !wt.blocking {
                for (name, at) in [("suspend", wt.start_ns), ("resume", wt.end_ns)] {
                    event(
                        &mut w,
                        format!(
                            "{{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"wait\",\"name\":\"{name}\",\"pid\":1,\"tid\":{wtrack},\"ts\":{:.3},\"args\":{{\"exec\":{},\"on_exec\":{},\"on_query\":{}}}}}",
                            us(at),
                            e.exec,
                            wt.on_exec,
                            json_str(q)
                        ),
                    )?;
                }
                for (ph, at) in [("b", wt.start_ns), ("e", wt.end_ns)] {
                    event(
                        &mut w,
                        format!(
                            "{{\"ph\":\"{ph}\",\"cat\":\"wait\",\"name\":{},\"id\":{flow},\"pid\":1,\"tid\":{wtrack},\"ts\":{:.3}}}",
                            json_str(&format!("wait for {q}")),
                            us(at)
                        ),
                    )?;
                }
            }
            if let Some(t) = target {
                let ttrack = timeline::track_of(profile, t.worker);
                let at = t.end_ns.saturating_sub(1).max(t.start_ns);
                event(
                    &mut w,
                    format!(
                        "{{\"ph\":\"s\",\"cat\":\"wake\",\"name\":\"wake\",\"id\":{flow},\"pid\":1,\"tid\":{ttrack},\"ts\":{:.3}}}",
                        us(at)
                    ),
                )?;
                event(
                    &mut w,
                    format!(
                        "{{\"ph\":\"f\",\"bp\":\"e\",\"cat\":\"wake\",\"name\":\"wake\",\"id\":{flow},\"pid\":1,\"tid\":{track},\"ts\":{:.3}}}",
                        us(wt.end_ns)
                    ),
                )?;
            }
        }
    }
    write!(w, "\n],\n\"weft\":")?;
    write_dag(profile, &mut w)?;
    writeln!(w, "}}")?;
    w.flush()
}

/// The `"weft"` object: the profile itself, for `weft simulate`. Reads are
/// `[target, kind, strand, at_ns, self_before_ns|null]`, waits
/// `[on_exec, start_ns, end_ns, worker|null, blocking]`, forks
/// `[parent, group, child, at_ns]`.
fn write_dag(p: &Profile, w: &mut impl Write) -> io::Result<()> {
    let opt = |v: Option<u64>| v.map_or("null".to_owned(), |v| v.to_string());
    let read = |r: &super::ReadRecord| {
        format!(
            "[{},\"{}\",{},{},{}]",
            r.target,
            r.kind.as_str(),
            r.strand,
            r.at_ns,
            opt(r.self_before_ns)
        )
    };
    write!(
        w,
        "{{\"version\":1,\"mode\":{},\"workers\":{},\"start_ns\":{},\"wall_ns\":{},\"work_ns\":{},\"span_ns\":{},\"hits\":{{",
        json_str(&p.mode),
        p.workers,
        p.start_ns,
        p.wall_ns,
        p.work(),
        p.span()
    )?;
    let hits: Vec<String> = p
        .hits
        .iter()
        .map(|(q, n)| format!("{}:{n}", json_str(q)))
        .collect();
    write!(w, "{}}},\"worker_stats\":[", hits.join(","))?;
    let stats: Vec<String> = p
        .worker_stats
        .iter()
        .map(|s| {
            format!(
                "{{\"worker\":{},\"busy_ns\":{},\"waiting_ns\":{},\"idle_ns\":{},\"executions\":{},\"steals\":{},\"suspends\":{},\"resumes\":{},\"parks\":{}}}",
                s.worker, s.busy_ns, s.waiting_ns, s.idle_ns, s.executions, s.steals, s.suspends, s.resumes, s.parks
            )
        })
        .collect();
    write!(w, "{}],\"roots\":[", stats.join(","))?;
    let roots: Vec<String> = p.roots.iter().map(read).collect();
    let forks: Vec<String> = p
        .forks
        .iter()
        .map(|f| format!("[{},{},{},{}]", f.parent, f.group, f.child, f.at_ns))
        .collect();
    writeln!(
        w,
        "{}],\"forks\":[{}],\"execs\":[",
        roots.join(","),
        forks.join(",")
    )?;
    for (i, e) in p.execs.iter().enumerate() {
        let reads: Vec<String> = e.reads.iter().map(read).collect();
        let waits: Vec<String> = e
            .waits
            .iter()
            .map(|x| {
                format!(
                    "[{},{},{},{},{}]",
                    x.on_exec,
                    x.start_ns,
                    x.end_ns,
                    opt(x.worker.map(|w| w as u64)),
                    x.blocking
                )
            })
            .collect();
        write!(
            w,
            "{}{{\"exec\":{},\"query\":{},\"key\":{},\"worker\":{},\"strand\":{},\"start_ns\":{},\"end_ns\":{},\"self_ns\":{},\"parent\":{},\"reads\":[{}],\"waits\":[{}]}}",
            if i == 0 { "" } else { ",\n" },
            e.exec,
            json_str(e.query),
            json_str(&e.key),
            opt(e.worker.map(|w| w as u64)),
            e.strand,
            e.start_ns,
            e.end_ns,
            e.self_ns,
            opt(e.parent),
            reads.join(","),
            waits.join(",")
        )?;
    }
    write!(w, "\n]}}")
}

/// `s` as a JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::diamond;
    use super::*;

    #[test]
    fn escapes_and_writes_every_exec() {
        assert_eq!(json_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        let mut p = diamond();
        p.execs[0].key = "\"quoted\"".into();
        let mut buf = Vec::new();
        write_chrome_trace(&p, &mut buf).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert!(s.starts_with("{\"displayTimeUnit\""));
        assert_eq!(s.matches("\"cat\":\"query\"").count(), 4, "{s}");
        assert!(s.contains("\"span_ns\":65"));
    }
}
