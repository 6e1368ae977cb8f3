//! A static SVG timeline of a [`Profile`]: one row per worker
//! (`<g class="row">`), time left to right, each instant coloured by the
//! query kind innermost on that worker (executions at least 2 px wide get a
//! white outline and a tooltip with their key and self time), blocking
//! waits in red, idle time left grey; a time axis and a legend.

use std::collections::BTreeMap;
use std::io::{self, Write};

use super::timeline::{self, SliceKind};
use super::Profile;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 150.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const ROW: f64 = 26.0;
const GAP: f64 = 6.0;
const IDLE: &str = "#e6e6e6";
const WAIT: &str = "#c0392b";
/// A fiber suspended in a wait: a thin bar under its worker's row.
const SUSPENDED: &str = "#e67e22";
/// Slices at least this wide (px) carry their label as text.
const LABEL_MIN_PX: f64 = 60.0;
/// How many of the slowest executions the picture lists.
const SLOWEST: usize = 12;
/// Colours for query kinds, most self time first; later kinds reuse them.
const PALETTE: [&str; 12] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7", "#9c755f",
    "#17becf", "#8c564b", "#bcbd22", "#7f7f7f",
];

/// Writes the timeline picture of `profile` as SVG (see the module doc).
///
/// # Errors
///
/// Any error of `out`.
pub fn write_svg_timeline(profile: &Profile, out: impl Write) -> io::Result<()> {
    let mut w = io::BufWriter::new(out);
    let slices = timeline::slices(profile);
    let runs = timeline::exclusive(&slices);
    let rows = timeline::track_count(profile).max(1);
    let kinds = profile.kind_stats();
    let colour: BTreeMap<&str, &str> = kinds
        .iter()
        .enumerate()
        .map(|(i, k)| (k.query, PALETTE[i % PALETTE.len()]))
        .collect();
    let t0 = profile.start_ns;
    let wall = profile
        .wall_ns
        .max(
            profile
                .execs
                .iter()
                .map(|e| e.end_ns.saturating_sub(t0))
                .max()
                .unwrap_or(0),
        )
        .max(1);
    let plot = WIDTH - LEFT - RIGHT;
    let x = |t: u64| LEFT + (t.saturating_sub(t0) as f64 / wall as f64) * plot;
    let legend_rows = (kinds.len() + 3).div_ceil(4);
    let mut slowest: Vec<usize> = (0..profile.execs.len()).collect();
    slowest.sort_by_key(|&i| (std::cmp::Reverse(profile.execs[i].self_ns), i));
    slowest.truncate(SLOWEST);
    let height = TOP
        + rows as f64 * (ROW + GAP)
        + 30.0
        + legend_rows as f64 * 18.0
        + 30.0
        + slowest.len() as f64 * 16.0
        + 10.0;
    writeln!(
        w,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0}" viewBox="0 0 {WIDTH} {height:.0}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(
        w,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height:.0}" fill="white"/>"#
    )?;
    writeln!(
        w,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        xml(&format!(
            "weft {} · {} workers · wall {:.3} ms · work {:.3} ms · span {:.3} ms · parallelism {:.2}",
            profile.mode,
            profile.workers,
            profile.wall_ns as f64 / 1e6,
            profile.work() as f64 / 1e6,
            profile.span() as f64 / 1e6,
            profile.parallelism()
        ))
    )?;
    // Time axis.
    let step = nice_step(wall as f64 / 1e6 / 8.0);
    let mut tick = 0.0;
    while tick <= wall as f64 / 1e6 + 1e-9 {
        let tx = LEFT + tick * 1e6 / wall as f64 * plot;
        writeln!(
            w,
            r##"<line x1="{tx:.2}" y1="{:.1}" x2="{tx:.2}" y2="{:.1}" stroke="#bbb" stroke-width="0.5"/><text x="{tx:.2}" y="{:.1}" text-anchor="middle" fill="#555">{} ms</text>"##,
            TOP - 8.0,
            TOP + rows as f64 * (ROW + GAP),
            TOP - 12.0,
            trim(tick)
        )?;
        tick += step;
    }
    let by_id: std::collections::HashMap<u64, usize> = profile
        .execs
        .iter()
        .enumerate()
        .map(|(i, e)| (e.exec, i))
        .collect();
    for row in 0..rows {
        let y = TOP + row as f64 * (ROW + GAP);
        let label = if row < profile.workers.max(1)
            || profile.execs.iter().any(|e| e.worker == Some(row))
        {
            let busy = profile.worker_stats.get(row).map(|s| {
                let total = (s.busy_ns + s.waiting_ns + s.idle_ns).max(1);
                s.busy_ns as f64 * 100.0 / total as f64
            });
            match busy {
                Some(b) => format!("worker {row} ({b:.0}% busy)"),
                None => format!("worker {row}"),
            }
        } else {
            "outside pool".to_owned()
        };
        writeln!(w, r#"<g class="row" id="worker-{row}">"#)?;
        writeln!(
            w,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + ROW * 0.65,
            xml(&label)
        )?;
        writeln!(
            w,
            r#"<rect class="idle" x="{LEFT}" y="{y:.1}" width="{plot:.1}" height="{ROW}" fill="{IDLE}"><title>idle</title></rect>"#
        )?;
        for &(a, b, i) in runs.iter().filter(|(_, _, i)| slices[*i].track == row) {
            let (x0, x1) = (x(a), x(b));
            if x1 - x0 < 0.05 {
                continue;
            }
            let (fill, title) = match slices[i].kind {
                SliceKind::Exec { exec, .. } => {
                    let e = &profile.execs[exec];
                    (
                        colour.get(e.query).copied().unwrap_or("#333"),
                        format!(
                            "{}({}) self {:.3} ms",
                            e.query,
                            e.key,
                            e.self_ns as f64 / 1e6
                        ),
                    )
                }
                SliceKind::Wait { .. } => (WAIT, "blocked in a wait".to_owned()),
            };
            if x1 - x0 >= 2.0 {
                writeln!(
                    w,
                    r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{ROW}" fill="{fill}" stroke="white" stroke-width="0.5"><title>{}</title></rect>"#,
                    x1 - x0,
                    xml(&title)
                )?;
                if x1 - x0 >= LABEL_MIN_PX {
                    // The label, cut to the slice (about 6.5 px a character).
                    let fit = ((x1 - x0 - 6.0) / 6.5) as usize;
                    let label = title.split(" self ").next().unwrap_or("");
                    let shown: String = if label.chars().count() > fit {
                        let mut t: String = label.chars().take(fit.saturating_sub(1)).collect();
                        t.push('…');
                        t
                    } else {
                        label.to_owned()
                    };
                    writeln!(
                        w,
                        r#"<text x="{:.2}" y="{:.1}" font-size="11" fill="white" pointer-events="none">{}</text>"#,
                        x0 + 3.0,
                        y + ROW * 0.65,
                        xml(&shown)
                    )?;
                }
            } else {
                writeln!(
                    w,
                    r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{ROW}" fill="{fill}"/>"#,
                    x1 - x0
                )?;
            }
        }
        // Fibers suspended while their worker was on this row: a thin bar
        // under the row (the worker itself ran other work, or idled).
        for e in &profile.execs {
            for wt in e.waits.iter().filter(|wt| !wt.blocking) {
                if timeline::track_of(profile, wt.worker) != row {
                    continue;
                }
                let (x0, x1) = (x(wt.start_ns), x(wt.end_ns));
                if x1 - x0 < 0.5 {
                    continue;
                }
                let on = by_id
                    .get(&wt.on_exec)
                    .map(|&o| &profile.execs[o])
                    .map_or_else(String::new, |o| format!(" for {}({})", o.query, o.key));
                writeln!(
                    w,
                    r#"<rect x="{x0:.2}" y="{:.1}" width="{:.2}" height="4" fill="{SUSPENDED}"><title>{}</title></rect>"#,
                    y + ROW - 4.0,
                    x1 - x0,
                    xml(&format!(
                        "{}({}) suspended{on}, {:.3} ms; its worker was free",
                        e.query,
                        e.key,
                        (wt.end_ns - wt.start_ns) as f64 / 1e6
                    ))
                )?;
            }
        }
        writeln!(w, "</g>")?;
    }
    // Legend.
    let ly = TOP + rows as f64 * (ROW + GAP) + 20.0;
    let mut items: Vec<(&str, String)> = kinds
        .iter()
        .map(|k| (colour[k.query], k.query.to_owned()))
        .collect();
    items.push((
        WAIT,
        "blocked: a thread waits, its worker is lost".to_owned(),
    ));
    items.push((SUSPENDED, "suspended fiber (worker free)".to_owned()));
    items.push((IDLE, "idle".to_owned()));
    for (i, (fill, name)) in items.iter().enumerate() {
        let (lx, lyy) = (10.0 + (i % 4) as f64 * 290.0, ly + (i / 4) as f64 * 18.0);
        writeln!(
            w,
            r##"<rect x="{lx:.1}" y="{:.1}" width="12" height="12" fill="{fill}" stroke="#888" stroke-width="0.5"/><text x="{:.1}" y="{:.1}">{}</text>"##,
            lyy - 10.0,
            lx + 16.0,
            lyy,
            xml(name)
        )?;
    }
    // The slowest executions by self time, as `cargo build --timings` lists
    // its slowest units.
    let sy = ly + legend_rows as f64 * 18.0 + 16.0;
    writeln!(
        w,
        r#"<text x="10" y="{sy:.1}" font-weight="bold">slowest queries (self time)</text>"#
    )?;
    for (n, &i) in slowest.iter().enumerate() {
        let e = &profile.execs[i];
        writeln!(
            w,
            r#"<text x="10" y="{:.1}">{:>8.3} ms  {}</text>"#,
            sy + 16.0 * (n + 1) as f64,
            e.self_ns as f64 / 1e6,
            xml(&format!(
                "{}({}) on {}, {:.3} ms in all",
                e.query,
                e.key,
                e.worker
                    .map_or("no worker".to_owned(), |w| format!("worker {w}")),
                (e.end_ns - e.start_ns) as f64 / 1e6
            ))
        )?;
    }
    writeln!(w, "</svg>")?;
    w.flush()
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 0.0 || !raw.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn trim(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// `s` escaped for XML text and attributes.
fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::super::tests::diamond;
    use super::*;

    #[test]
    fn one_row_per_worker() {
        let mut p = diamond();
        p.execs[1].worker = Some(1);
        p.execs[0].key = "<&>".into();
        let mut buf = Vec::new();
        write_svg_timeline(&p, &mut buf).unwrap();
        let s = String::from_utf8(buf).unwrap();
        assert_eq!(s.matches(r#"<g class="row""#).count(), 2);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(!s.contains("<&>"));
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(3.0), 5.0);
    }

    #[test]
    fn labels_suspensions_and_the_slowest_queries() {
        let mut p = diamond();
        for e in &mut p.execs {
            e.worker = Some(0);
        }
        p.execs[2].key = "serde".into();
        // d(…) suspended 10 ns waiting for c: a thin bar, not a blocked slice.
        p.execs[3].waits.push(crate::profile::WaitRecord {
            on_exec: 3,
            start_ns: 60,
            end_ns: 70,
            worker: Some(0),
            blocking: false,
        });
        let mut buf = Vec::new();
        write_svg_timeline(&p, &mut buf).unwrap();
        let s = String::from_utf8(buf).unwrap();
        // c runs 50 of 80 ns: wide enough for its label as text.
        assert!(s.contains(">c(serde)</text>"), "{s}");
        assert!(s.contains(&format!(r#"fill="{SUSPENDED}""#)));
        assert!(s.contains("suspended for c(serde)"));
        let slowest = s.find("slowest queries").expect("the slowest list");
        let (c, b) = (
            s[slowest..].find("c(serde) on worker 0"),
            s[slowest..].find("b("),
        );
        assert!(
            c.is_some() && b.is_some() && c < b,
            "c (50 ns) before b (20 ns)"
        );
    }
}
