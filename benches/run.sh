#!/usr/bin/env bash
# Whole-process benchmarks of `jobpool run`, side by side with the peers, in one run.
# Prints each comparison as a ratio (ours / peer; below 1 means jobpool is faster).
#   bash benches/run.sh            # default: 10 runs each
#   RUNS=30 bash benches/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-10}

need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need hyperfine hyperfine
need parallel parallel
need jq jq

cargo build --release --quiet
JP=$PWD/target/release/jobpool
PY=$(python3 -c 'import sys; print(sys.executable)')   # the real interpreter, not a shim
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
rustc -O -o "$WORK/spawn_floor" benches/run/spawn_floor.rs
cp -r benches/run/jobs "$WORK/jobs"

mean() { jq -r ".results[$2].mean" "$1"; }
ratio() { python3 - "$1" "$2" <<'PY'
import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f"{a/b:.2f}")
PY
}

echo "== command kind: true x2000, 2 workers, vs a bare Rust spawn loop (2 at a time)"
hyperfine -w 1 -r "$RUNS" --export-json "$WORK/true.json" \
  "$JP run -q --progress never $WORK/jobs/true-2000.toml" \
  "$WORK/spawn_floor 2000" \
  "seq 2000 | xargs -P2 -n1 /bin/true" \
  "seq 2000 | parallel -j2 /bin/true" 2>&1 | grep -E 'Time|±' || true
a=$(mean "$WORK/true.json" 0); f=$(mean "$WORK/true.json" 1); x=$(mean "$WORK/true.json" 2); p=$(mean "$WORK/true.json" 3)
echo "jobpool / bare spawn loop: $(ratio "$a" "$f")   (target <= 1.3)"
echo "xargs -P2 / bare spawn loop: $(ratio "$x" "$f")"
echo "GNU parallel / bare spawn loop: $(ratio "$p" "$f")"

echo "== script kind: 100,000 x*x to a jsonl file, vs Python Pool(2).map_async + json.dumps"
hyperfine -N -w 1 -r "$RUNS" --export-json "$WORK/square.json" \
  "$JP run -q --progress never $WORK/jobs/square-100k.toml" \
  "$PY benches/run/square.py $WORK/square-py.jsonl" 2>&1 | grep -E 'Time|±' || true
a=$(mean "$WORK/square.json" 0); b=$(mean "$WORK/square.json" 1)
echo "jobpool / python: $(ratio "$a" "$b")   (target < 1)"
test "$(wc -l < "$WORK/jobs/out/square-100k.jsonl")" -eq 100000 || echo "WARNING: jsonl sink does not have 100000 lines"

echo "== one-submission job, whole process, vs Python Pool(2) start + one apply_async + shutdown"
hyperfine -N -w 3 -r "$((RUNS * 3))" --export-json "$WORK/one.json" \
  "$JP run -q --progress never $WORK/jobs/one.toml" \
  "$PY benches/run/one.py" 2>&1 | grep -E 'Time|±' || true
a=$(mean "$WORK/one.json" 0); b=$(mean "$WORK/one.json" 1)
echo "jobpool: $(python3 -c "print(f'{$a*1000:.1f} ms')") (target < 15 ms); jobpool / python: $(ratio "$a" "$b")"
