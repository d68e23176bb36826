#!/usr/bin/env bash
# Pool benchmarks: jobpool's pool and Python's multiprocessing.Pool(2), side by side in
# one run, with ratios. Usage: benches/pool.sh   (POOL_BENCH_RUNS=N for more runs)
set -euo pipefail
cd "$(dirname "$0")/.."

# The real interpreter, not a shim (pyenv's shim adds ~0.13 s per start).
PY=$(python3 -c 'import sys; print(sys.executable)')
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; } || true

echo "building (release)..." >&2
BIN=$(cargo bench --bench pool --no-run --message-format=json 2>/dev/null \
  | "$PY" -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "pool" and "bench" in m["target"]["kind"]:
        print(m["executable"])' | tail -1)

ours=$(mktemp); theirs=$(mktemp); trap 'rm -f "$ours" "$theirs"' EXIT
"$BIN" >"$ours"
"$PY" benches/pool/bench.py >"$theirs"

printf '%-16s %16s %16s %10s\n' measure jobpool python ratio
while read -r name ours_v unit; do
  py_v=$(awk -v n="$name" '$1 == n { print $2 }' "$theirs")
  if [ -z "$py_v" ]; then
    printf '%-16s %12s %-3s %12s %-3s %s\n' "$name" "$ours_v" "${unit%%/*}" "-" "" "(no Python counterpart)"
    continue
  fi
  if [ "$unit" = ms ]; then
    ratio=$(awk -v a="$ours_v" -v b="$py_v" 'BEGIN { printf "%.1fx faster", b / a }')
  else
    ratio=$(awk -v a="$ours_v" -v b="$py_v" 'BEGIN { printf "%.1fx", a / b }')
  fi
  printf '%-16s %12s %-3s %12s %-3s %s\n' "$name" "$ours_v" "${unit%%/*}" "$py_v" "${unit%%/*}" "$ratio"
done <"$ours"

if command -v hyperfine >/dev/null; then
  echo
  echo "whole-program start + shutdown of a 2-worker pool (hyperfine):"
  hyperfine -N --warmup 3 --runs 30 --style basic \
    "$PY -c 'import multiprocessing as m; p = m.Pool(2); p.close(); p.join()'" 2>/dev/null | grep -E "Time|Benchmark" || true
fi
