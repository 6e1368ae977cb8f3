#!/usr/bin/env bash
# Records rustc self-profiles of the benchmark corpus for `weft replay`.
#
#   bench/replay/record.sh [OUT_DIR] [-Zthreads N]
#
# Runs `cargo +nightly check` of bench/corpus (its own target dir, so the
# stable build is untouched) with rustc's self-profiler on, recording every
# query execution with its key and every cache hit:
#
#   -Zself-profile=OUT_DIR -Zself-profile-events=default,query-keys,query-cache-hit
#
# One `<crate>-<pid>.mm_profdata` per crate lands in OUT_DIR (default
# bench/replay/profiles, ignored by git); `syn` alone is a few hundred MB.
# Incremental compilation is off (CARGO_INCREMENTAL=0): a fresh, full check
# with no result hashing in the profile. THREADS (default 1) is passed as
# -Zthreads, for profiles of rustc's parallel front-end.
#
# Then, e.g.:
#   cargo run --release -p weft-pipeline -- replay OUT_DIR/syn-*.mm_profdata --check
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-$root/bench/replay/profiles}"
threads="${THREADS:-1}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "record.sh: a nightly toolchain is needed (rustup toolchain install nightly)" >&2
  exit 1
fi
cd "$root/bench/corpus"
# A clean check: every crate is compiled, so every crate is profiled.
rm -rf "$root/target/replay-record"
CARGO_INCREMENTAL=0 \
CARGO_TARGET_DIR="$root/target/replay-record" \
RUSTFLAGS="-Zself-profile=$out -Zself-profile-events=default,query-keys,query-cache-hit -Zthreads=$threads" \
  cargo +nightly check --quiet
# Build scripts' profiles (`build_script_build-*`) and the corpus's own
# empty crate are kept too; they are small.
ls -S "$out"/*.mm_profdata | head -20
