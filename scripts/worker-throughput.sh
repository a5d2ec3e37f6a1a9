#!/usr/bin/env bash
# Measures sweep throughput for 1..N local workers on one PostgreSQL database (the README's "Running on a cluster"
# figure): the same small sweep (the digits task on the shipped backbone, 3 methods × 3 lrs + their 3 final runs,
# 1 epoch) planned into a fresh database each time, then N `peftsharp worker` processes started together and timed
# until all exit. Usage: scripts/worker-throughput.sh [N ...] (default: 1 2). THREADS=k sets each worker's
# OMP_NUM_THREADS (libtorch's intra-op threads; by default each worker uses every core).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=/tmp/peftsharp-throughput
url=$(./scripts/start-postgres.sh)
db="${url%/*}/peftsharp_throughput"
cli="$repo/src/PeftSharp.Cli/bin/Release/net10.0/linux-x64/PeftSharp.Cli.dll"
[ -f "$cli" ] || dotnet build -c Release -m:1 src/PeftSharp.Cli -v q >/dev/null
peftsharp() { dotnet "$cli" "$@"; }
mkdir -p "$work"
[ -d "$work/suite/digits" ] || peftsharp suite materialize --out "$work/suite" --tasks digits >/dev/null
for n in "${@:-1 2}"; do
  psql -q "$url" -c "DROP DATABASE IF EXISTS peftsharp_throughput WITH (FORCE)" -c "CREATE DATABASE peftsharp_throughput" 2>/dev/null
  peftsharp sweep plan --db "$db" --name tp --data "$work/suite/digits" --method bitfit,lora,linear --grid none \
    --lrs 1e-3,3e-3,1e-2 --wds 1e-4 --epochs 1 --warmup 0 --batch-size 64 \
    --checkpoint "$repo/models/peftsharp-vit-tiny6-p8-32.safetensors" >/dev/null
  start=$(date +%s.%N)
  pids=()
  for i in $(seq "$n"); do env ${THREADS:+OMP_NUM_THREADS=$THREADS} dotnet "$cli" worker --db "$db" --sweep tp --quiet >"$work/worker-$n-$i.log" 2>&1 & pids+=($!); done
  wait "${pids[@]}"
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  runs=$(peftsharp sweep status --db "$db" --sweep tp | sed -nE 's/^total: .* ([0-9]+) finished.*/\1/p')
  printf '%d worker(s)%s: %d runs in %.1f s = %.2f runs/min\n' "$n" "${THREADS:+ of $THREADS thread(s) each}" "$runs" "$seconds" "$(echo "$runs * 60 / $seconds" | bc -l)"
done
