#!/usr/bin/env bash
# Runs the seeded fault-and-interleaving simulation (tests/tests/simulation.rs, docs/simulation.md) for N
# minutes on fresh random seeds, then reports seeds run, operations, faults injected and invariant
# violations, with the command that reproduces each failing seed.
#   usage: scripts/soak.sh N [MILLIS_PER_SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:?usage: scripts/soak.sh MINUTES [MILLIS_PER_SEED]}"
millis="${2:-2500}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
cargo test -q -p cairn-tests --test simulation --no-run
log="$(mktemp -t cairn-soak.XXXXXX)"
end=$(( $(date +%s) + minutes * 60 ))
while [ "$(date +%s)" -lt "$end" ]; do
  first=$(( (RANDOM << 15 | RANDOM) + 1000 ))
  CAIRN_SIM_FIRST="$first" CAIRN_SIM_SEEDS=4 CAIRN_SIM_MILLIS="$millis" \
    cargo test -q -p cairn-tests --test simulation -- --nocapture >>"$log" 2>&1 || true
done
python3 - "$log" <<'PY'
import re, sys
seeds = ops = faults = violations = 0
failing = []
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"sim seed=(\d+) ops=(\d+) .*faults=(\d+) violations=(\d+)", line)
    if m:
        seeds += 1; ops += int(m[2]); faults += int(m[3]); violations += int(m[4])
        if int(m[4]): failing.append(m[1])
print(f"soak: {seeds} seeds, {ops} operations, {faults} faults injected, {violations} invariant violations")
for s in failing:
    print(f"  failing seed {s}: CAIRN_SIM_SEED={s} cargo test -p cairn-tests --test simulation -- --nocapture")
print(f"full output: {sys.argv[1]}")
sys.exit(1 if failing else 0)
PY
