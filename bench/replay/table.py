#!/usr/bin/env python3
"""The replay table of bench/README.md, in one sitting.

    bench/replay/table.py [--jobs 2] [--sim 1,2,4,8,16,64] [--rustc SPEC ...] GRAPH...

GRAPH: a profile or a converted graph (`weft replay PROFILE --export`).
For every graph and policy (recorded, sites, dataflow) it runs the release
`weft replay` serially, in threads mode and in fibers mode at `--jobs`, and
once more with `--simulate` (a recorded fibers run, predicted on the `--sim`
worker counts by `weft simulate`'s model), and prints one Markdown row:

    crate | policy | executions | hits | T1 | T∞ | T1/T∞ | serial | threads -jJ
    | fibers -jJ | bound/wall threads, fibers | simulated fibers P.. | threads P..

`--rustc SPEC` (a package of bench/corpus, e.g. syn@2.0.110) also times
`cargo +nightly rustc -p SPEC -- -Zthreads=1` and `=2` (a clean check of that
crate alone, its dependencies built once before), same sitting. Times are
seconds of wall clock; every run checks that the checksum is the same.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEFT = os.path.join(ROOT, "target", "release", "weft")
# The simulator is superlinear on some graphs (many forks): a cell it does
# not finish in this many seconds reads "-".
SIM_TIMEOUT = 120


def weft(*args, timeout=None):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "CARGO_MAKEFLAGS", "MFLAGS")}
    p = subprocess.run([WEFT, "replay", *args, "--jobserver", "off"],
                       capture_output=True, text=True, env=env, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"weft replay {' '.join(args)} failed:\n{p.stderr}")
    return p.stdout, p.stderr


def wall_s(stderr):
    m = re.search(r"; wall ([0-9.]+) ms", stderr)
    return float(m.group(1)) / 1e3


def fmt(v):
    return "-" if v is None else f"{v:.3f}"


def row(graph, policy, jobs, sim):
    out, err = weft(graph, "--policy", policy, "--mode", "serial", "--format", "json")
    info = json.loads(out)
    serial = wall_s(err)
    walls = {}
    for mode in ("threads", "fibers"):
        o, e = weft(graph, "--policy", policy, "--mode", mode, "-j", str(jobs), "--format", "json")
        if json.loads(o)["checksum"] != info["checksum"]:
            sys.exit(f"{graph} {policy} {mode}: checksum differs")
        walls[mode] = wall_s(e)
    predicted = {"fibers": {}, "threads": {}}
    try:
        _, e = weft(graph, "--policy", policy, "--mode", "fibers", "-j", str(jobs),
                    "--simulate", ",".join(map(str, sim)), timeout=SIM_TIMEOUT)
    except subprocess.TimeoutExpired:
        e = ""
    for line in e.splitlines():
        m = re.match(r"(fibers|threads)\s+(\d+)\s+([0-9.]+)", line)
        if m:
            predicted[m.group(1)][int(m.group(2))] = float(m.group(3)) / 1e3
    t1, tinf = info["t1_ns"] / 1e9, info["tinf_ns"] / 1e9
    bound = max(t1 / jobs, tinf)
    cells = [
        info["crate"], policy, f"{info['executions']:,}", f"{info['hit_reads']:,}",
        f"{t1:.3f}", f"{tinf:.3f}", f"{t1 / max(tinf, 1e-9):.2f}",
        f"{serial:.3f}", f"{walls['threads']:.3f}", f"{walls['fibers']:.3f}",
        f"{bound / walls['threads']:.0%}, {bound / walls['fibers']:.0%}",
        " / ".join(fmt(predicted["fibers"].get(p)) for p in sim),
        " / ".join(fmt(predicted["threads"].get(p)) for p in sim),
    ]
    return "| " + " | ".join(cells) + " |"


def rustc_times(spec):
    corpus = os.path.join(ROOT, "bench", "corpus")
    env = dict(os.environ, CARGO_INCREMENTAL="0",
               CARGO_TARGET_DIR=os.path.join(ROOT, "target", "replay-rustc"))
    env.pop("RUSTFLAGS", None)
    base = ["cargo", "+nightly", "rustc", "--quiet", "--profile", "check", "-p", spec, "--lib"]
    # Dependencies once, untimed.
    subprocess.run(base, cwd=corpus, env=env, check=True, capture_output=True)
    times = []
    for threads in (1, 2):
        subprocess.run(["cargo", "+nightly", "clean", "--quiet", "-p", spec], cwd=corpus, env=env,
                       check=True, capture_output=True)
        start = time.monotonic()
        subprocess.run(base + ["--", f"-Zthreads={threads}"], cwd=corpus, env=env, check=True,
                       capture_output=True)
        times.append(time.monotonic() - start)
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--sim", default="1,2,4,8,16,64")
    ap.add_argument("--rustc", action="append", default=[])
    a = ap.parse_args()
    sim = [int(p) for p in a.sim.split(",")]
    j = a.jobs
    print(f"| crate | policy | executions | hits | T1 s | T∞ s | T1/T∞ | serial s | threads -j{j} s "
          f"| fibers -j{j} s | bound/wall (threads, fibers) | simulated fibers P={'/'.join(map(str, sim))} s "
          f"| simulated threads s |")
    print("|" + "---|" * 13)
    for g in a.graphs:
        for policy in ("recorded", "sites", "dataflow"):
            print(row(g, policy, j, sim), flush=True)
    for spec in a.rustc:
        t = rustc_times(spec)
        print(f"\n`cargo +nightly rustc -p {spec}` (check): -Zthreads=1 {t[0]:.2f} s, "
              f"-Zthreads=2 {t[1]:.2f} s", flush=True)


if __name__ == "__main__":
    main()
