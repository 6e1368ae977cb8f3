#!/usr/bin/env bash
# What recording that is off costs: callgrind instruction counts of the same
# runs with the default build (feature `recording` compiled in, no
# `--profile`/`--trace`/`--timings` given) and with a build where the
# recording hooks are compiled out (`--no-default-features --features
# fibers`). Prints one line per run: instructions with, without, and the
# difference in percent. Instruction counts are repeatable, unlike timings
# on a shared machine; a zero-work `weft synth` is the worst case (pure
# engine overhead per query).
#
# Usage: bench/recording_cost.sh        (needs valgrind; ~1 minute once built)
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p weft-pipeline
cargo build --release -q -p weft-pipeline --no-default-features --features fibers \
    --target-dir target/norec

with=target/release/weft
without=target/norec/release/weft

count() {
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 >/dev/null |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

runs=(
    "synth --shape layered --nodes 2000 --work-us 0 --mode serial -j 1 --jobserver off"
    "synth --shape layered --nodes 2000 --work-us 0 --mode fibers -j 1 --jobserver off"
    "synth --shape layered --nodes 2000 --work-us 0 --mode threads -j 1 --jobserver off"
    "synth --shape fan-in --nodes 2000 --work-us 0 --mode fibers -j 1 --jobserver off"
    "analyze pipeline --mode serial -j 1 --jobserver off"
)
printf '%-80s %12s %12s %8s\n' "run (weft ...)" "with" "without" "cost"
for run in "${runs[@]}"; do
    # shellcheck disable=SC2086 # the run's words are separate arguments
    a=$(count "$with" $run)
    # shellcheck disable=SC2086
    b=$(count "$without" $run)
    awk -v r="$run" -v a="$a" -v b="$b" 'BEGIN { printf "%-80s %12d %12d %+7.2f%%\n", r, a, b, 100 * (a / b - 1) }'
done
