#!/usr/bin/env bash
# Planner benchmark (not a test): a 10-million-submission plan streamed through
# `jobpool plan | wc -l` with its peak memory, and the planner alone in submissions/s.
# Usage: benches/plan.sh            (builds release binaries first)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/time ]; then
    echo "installing GNU time (for peak memory)..." >&2
    (apt-get install -y time >/dev/null 2>&1 || sudo apt-get install -y time >/dev/null 2>&1) || {
        echo "cannot install GNU time; peak memory will not be measured" >&2
    }
fi

cargo build --release --quiet --bin jobpool --example plan_speed

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat >"$dir/ten-million.toml" <<'TOML'
[task]
kind = "command"
program = ["sim", "--a", "{a}", "--b", "{b}", "--c", "{c}"]

[args]
a = { range = [0, 10000] }
b = { range = [0.0, 100.0], step = 1.0 }
c = ["small", "medium", "large", "x-large", "x-small", "huge", "tiny", "big", "mini", "maxi"]
TOML

echo "== jobpool plan (10 000 000 submissions) | wc -l"
if [ -x /usr/bin/time ]; then
    /usr/bin/time -v -o "$dir/time.txt" target/release/jobpool plan "$dir/ten-million.toml" | wc -l
    grep -E "Maximum resident set size|Elapsed \(wall clock\)" "$dir/time.txt"
    kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$dir/time.txt")
    echo "peak memory: $((kib / 1024)) MiB (bound: 50 MiB)"
    [ "$kib" -lt $((50 * 1024)) ] || { echo "FAIL: over 50 MiB" >&2; exit 1; }
else
    time (target/release/jobpool plan "$dir/ten-million.toml" | wc -l)
fi

echo "== planner alone"
target/release/examples/plan_speed "$dir/ten-million.toml"
