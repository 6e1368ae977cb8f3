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
    let legend_rows = kinds.len().div_ceil(4) + 1;
    let height = TOP + rows as f64 * (ROW + GAP) + 30.0 + legend_rows as f64 * 18.0 + 10.0;
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
            } else {
                writeln!(
                    w,
                    r#"<rect x="{x0:.2}" y="{y:.1}" width="{:.2}" height="{ROW}" fill="{fill}"/>"#,
                    x1 - x0
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
    items.push((WAIT, "blocked (threads mode wait)".to_owned()));
    items.push((IDLE, "idle or suspended".to_owned()));
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
}
