#!/usr/bin/env bash
# The store's growth with repeated resumes: one run of a 100,000-submission `script` job,
# then RESUMES (default 10) fully resumed runs; prints each run's wall time and the disk
# use of .jobpool/ after it. Give a second binary to run the same side by side (for
# example a build of an earlier commit):
#   bash benches/resume.sh                       # the release build (built here)
#   bash benches/resume.sh path/to/old/jobpool   # old first, then this one
set -euo pipefail
cd "$(dirname "$0")/.."
RESUMES=${RESUMES:-10}
N=${N:-100000}
# Where cargo put it (`target/<host tuple>/release/`, see .cargo/config.toml).
BUILT=$(cargo build --release --quiet --bin jobpool --message-format=json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "jobpool":
        print(m["executable"])')
BINS=("$@" "$BUILT")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for bin in "${BINS[@]}"; do
  dir=$WORK/$(echo "$bin" | md5sum | cut -c1-8)
  mkdir -p "$dir"
  printf 'name = "big"\n[task]\nkind = "script"\nscript = "i * 2"\n[args]\ni = { range = [0, %s] }\n[[sink]]\nto = "out.txt"\n' "$N" > "$dir/big.toml"
  echo "== $bin"
  (
    cd "$dir"
    for k in $(seq 0 "$RESUMES"); do
      flag=$([ "$k" = 0 ] && echo "" || echo "--resume")
      start=$(date +%s.%N)
      "$bin" run -q $flag big.toml >/dev/null || true
      end=$(date +%s.%N)
      printf '%-9s %6.2f s   .jobpool %6d KiB\n' "$([ "$k" = 0 ] && echo first || echo "resume $k")" \
        "$(echo "$end - $start" | bc)" "$(du -sk .jobpool | cut -f1)"
    done
  )
done
