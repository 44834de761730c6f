#!/usr/bin/env bash
# Runs the fuzz targets, each for SECONDS, from the committed corpus
# (fuzz/corpus/TARGET, copied: the run does not touch the repository) plus
# EXTRA_CORPUS/TARGET when given. A crash stops with its input saved under
# fuzz/artifacts/TARGET/. Usage: fuzz/run.sh SECONDS [TARGET…]
# Needs cargo-fuzz; on a stable toolchain RUSTC_BOOTSTRAP=1 allows its
# sanitizer flags. The build is kept in ~/.cache/pullstats-fuzz-target
# (PULLSTATS_FUZZ_TARGET).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:?usage: run.sh SECONDS [TARGET…]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd "$here" && cargo fuzz list)
fi
export RUSTC_BOOTSTRAP=1
# Outside the clone, so a fresh clone of the repository reuses the build.
target_dir=${PULLSTATS_FUZZ_TARGET:-$HOME/.cache/pullstats-fuzz-target}
cd "$here"
cargo fuzz build -O --target-dir "$target_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  case $t in
    mmdb) max_len=131072 ;;
    cloud_ranges|tokens_file) max_len=65536 ;;
    *) max_len=8192 ;;
  esac
  mkdir -p "$work/$t"
  [ -d "corpus/$t" ] && cp -r "corpus/$t/." "$work/$t/"
  extra=()
  [ -n "${EXTRA_CORPUS:-}" ] && [ -d "$EXTRA_CORPUS/$t" ] && extra=("$EXTRA_CORPUS/$t")
  start=$(date +%s)
  out=$(cargo fuzz run -O --target-dir "$target_dir" "$t" "$work/$t" "${extra[@]}" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 2>&1) || { echo "$out" | tail -40; echo "fuzz target $t FAILED"; exit 1; }
  runs=$(echo "$out" | sed -n 's/^stat::number_of_executed_units: *//p')
  cov=$(echo "$out" | grep -o 'cov: [0-9]*' | tail -1)
  echo "fuzz $t: ${runs:-?} runs in $(( $(date +%s) - start )) s, $cov, no crash"
done
