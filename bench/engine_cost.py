#!/usr/bin/env python3
"""The engine-cost table of issue 13, from one sitting of criterion runs.

Runs the `query` and `layered` benches (unless --no-run) and prints, per
figure, criterion's mean with its 95% interval and the ratios the issue's
acceptance asks for (fibers -j2 / threads -j2, Weft / the OnceLock peer).

    python3 bench/engine_cost.py            # runs the benches (~4 minutes)
    python3 bench/engine_cost.py --no-run   # tabulates the last run
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRIT = os.path.join(ROOT, "target", "criterion")


def mean(group, *path):
    f = os.path.join(CRIT, group, *path, "new", "estimates.json")
    try:
        with open(f) as fh:
            m = json.load(fh)["mean"]
    except FileNotFoundError:
        return None
    ci = m["confidence_interval"]
    return m["point_estimate"], ci["lower_bound"], ci["upper_bound"]


def show(label, est, target=None):
    if est is None:
        print(f"  {label:<34} (not run)")
        return
    p, lo, hi = est
    verdict = ""
    if target is not None:
        verdict = "  ok" if p <= target else f"  OVER the {target:g} ns target"
    print(f"  {label:<34} {p:8.1f} ns  [{lo:.1f} .. {hi:.1f}]{verdict}")


def main():
    if "--no-run" not in sys.argv:
        for bench in ["query", "layered"]:
            subprocess.run(
                ["cargo", "bench", "-p", "weft-bench", "--bench", bench, "--",
                 "--warm-up-time", "1"],
                cwd=ROOT, check=True)
    modes = ["serial", "threads", "fibers"]
    print("query group (1 worker; hit <= 20 ns, trivial miss <= 150 ns):")
    for storage in ["", "-hashed"]:
        for mode in modes:
            show(f"hit{storage}/{mode}", mean("query", f"hit{storage}", mode), 20)
            show(f"miss{storage}/{mode}", mean("query", f"miss{storage}", mode), 150)
    for mode in modes:
        show(f"hit/{mode}+recording", mean("query", "hit", f"{mode}+recording"))
        show(f"miss/{mode}+recording", mean("query", "miss", f"{mode}+recording"))
    print("layered 200,000 x 3, per node (miss <= 300 ns, hit <= 25 ns):")
    for mode in modes:
        for j in ([1] if mode == "serial" else [1, 2]):
            show(f"miss/{mode}-j{j}", mean("layered", "miss", f"{mode}-j{j}"), 300)
        show(f"hit/{mode}", mean("layered", "hit", mode), 25)
    for peer in ["oncelock-j1", "oncelock-j2", "salsa-j1"]:
        show(f"miss/{peer}", mean("layered", "miss", peer))
    show("hit/oncelock", mean("layered", "hit", "oncelock"))
    show("hit/salsa", mean("layered", "hit", "salsa"))
    f2 = mean("layered", "miss", "fibers-j2")
    t2 = mean("layered", "miss", "threads-j2")
    if f2 and t2:
        r = f2[0] / t2[0]
        print(f"  fibers-j2 / threads-j2: {r:.2f}x (target <= 1.1x)")
    s1 = mean("layered", "miss", "serial-j1")
    o1 = mean("layered", "miss", "oncelock-j1")
    if s1 and o1:
        print(f"  serial-j1 / oncelock-j1 (miss): {s1[0] / o1[0]:.1f}x")
    sa = mean("layered", "miss", "salsa-j1")
    if s1 and sa:
        print(f"  serial-j1 / salsa-j1 (miss): {s1[0] / sa[0]:.2f}x")
    hs, ha = mean("layered", "hit", "serial"), mean("layered", "hit", "salsa")
    if hs and ha:
        print(f"  hit serial / hit salsa: {hs[0] / ha[0]:.2f}x")


if __name__ == "__main__":
    main()
