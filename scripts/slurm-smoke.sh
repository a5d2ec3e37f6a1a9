#!/usr/bin/env bash
# A real Slurm run of a sweep: a single-node Slurm on this machine (slurmctld + slurmd on 127.0.0.1, munge), a tiny
# sweep planned into the test PostgreSQL database, the job array `peftsharp sweep slurm` writes (2 worker tasks)
# submitted with sbatch, and a check that every queued run finished. Installs slurm-wlm and munge (Debian) if they
# are missing; where Slurm cannot be installed or started it prints "SKIPPED: slurm not available: <reason>" and
# exits 0, so callers can tell a skip from a pass. Run as root (slurmd must be). Leaves no daemon running that it
# started. Takes about a minute here once the packages are installed.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
work=${PEFTSHARP_SLURM_WORK:-/tmp/peftsharp-slurm}
skip() { echo "SKIPPED: slurm not available: $*"; exit 0; }
fail() { echo "slurm smoke: FAILED: $*"; exit 1; }
log() { echo "slurm-smoke: $*"; }

[ "$(id -u)" -eq 0 ] || skip "this script must run as root (slurmd and munged need it)"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
  log "installing slurm-wlm and munge"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends slurm-wlm munge; } >"$work.apt.log" 2>&1 \
    || skip "apt-get could not install slurm-wlm and munge ($(tail -1 "$work.apt.log"))"
fi

# ---- the database and the program -----------------------------------------------------------------------------
url=$(./scripts/start-postgres.sh) || fail "could not start PostgreSQL"
db="${url%/*}/peftsharp_slurm_smoke"
psql -q "$url" -c "DROP DATABASE IF EXISTS peftsharp_slurm_smoke WITH (FORCE)" -c "CREATE DATABASE peftsharp_slurm_smoke" >/dev/null \
  || fail "could not create the smoke database"
cli="$repo/src/PeftSharp.Cli/bin/Release/net10.0/linux-x64/PeftSharp.Cli.dll"
[ -f "$cli" ] || dotnet build -c Release -m:1 src/PeftSharp.Cli -v q >/dev/null || fail "could not build the CLI"
peftsharp() { dotnet "$cli" "$@"; }

# ---- a single-node cluster on 127.0.0.1 -------------------------------------------------------------------------
started=()
cleanup() {
  for pidfile in "${started[@]}"; do
    [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
  done
}
trap cleanup EXIT
rm -rf "$work" && mkdir -p "$work/state" "$work/spool" "$work/logs" || fail "cannot create $work"
chmod 755 "$work"

if ! (munge -n | unmunge) >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/peftsharp-smoke.pid || skip "munged would not start"
  started+=(/run/munge/peftsharp-smoke.pid)
  sleep 1
  (munge -n | unmunge) >/dev/null 2>&1 || skip "munge does not authenticate"
fi

node=$(hostname -s)
cpus=$(nproc)
export SLURM_CONF="$work/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=peftsharp-smoke
SlurmctldHost=${node}(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} State=UNKNOWN
PartitionName=smoke Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -f "$SLURM_CONF" || skip "slurmctld would not start ($(tail -1 "$work/slurmctld.log" 2>/dev/null))"
started+=("$work/slurmctld.pid")
slurmd -f "$SLURM_CONF" || skip "slurmd would not start ($(tail -1 "$work/slurmd.log" 2>/dev/null))"
started+=("$work/slurmd.pid")
for _ in $(seq 60); do
  state=$(sinfo -h -o %t 2>/dev/null | head -1)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || skip "the node did not become idle (state '${state:-none}'; $(tail -1 "$work/slurmd.log" 2>/dev/null))"
log "cluster up: node $node ($cpus CPUs), partition smoke"

# ---- a tiny sweep through sbatch ----------------------------------------------------------------------------------
peftsharp suite materialize --out "$work/suite" --tasks digits >/dev/null || fail "could not materialize the digits task"
peftsharp sweep plan --db "$db" --name slurm-smoke --data "$work/suite/digits" --method bitfit --grid none \
  --lrs 1e-3,1e-2 --wds 1e-4 --epochs 1 --warmup 0 --batch-size 64 \
  --checkpoint "$repo/tests/PeftSharp.Tests/TestData/vit_tiny_timm.safetensors" || fail "sweep plan failed"
peftsharp sweep slurm --db "$db" --workers 2 --sweep slurm-smoke --partition smoke --cpus-per-task 1 --time 10:00 \
  --lease-seconds 15 --out "$work/sweep.sbatch" --log-dir "$work/logs" || fail "sweep slurm failed"
password=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.unquote(urllib.parse.urlsplit(sys.argv[1]).password or ""))' "$url")
[ -n "$password" ] && grep -qF -- "$password" "$work/sweep.sbatch" && fail "the job script contains the database password"
export PEFTSHARP_DB="$db"   # the job reads the URL (with its password) from here, not from the script
timeout 300 sbatch --wait "$work/sweep.sbatch" || { cat "$work"/logs/* 2>/dev/null; fail "the job array failed or timed out"; }
logs=$(ls "$work"/logs/peftsharp-worker-*.out 2>/dev/null | wc -l)
status=$(peftsharp sweep status --db "$db" --sweep slurm-smoke)
echo "$status"
echo "$status" | grep -q "^total: 0 pending, 0 running, 3 finished, 0 failed; 1 of 1 sweep(s) done" || { cat "$work"/logs/*; fail "not every run finished"; }
[ "$logs" -eq 2 ] || fail "expected 2 array task logs, found $logs"
workers=$(grep -h "claimed" "$work"/logs/*.out | sed -E 's/.*worker ([^ ]+):.*/\1/' | sort -u | wc -l)
log "runs claimed by $workers distinct worker(s) across the 2 array tasks"
echo "slurm smoke: PASSED (sbatch job array of 2 workers finished all 3 runs of the sweep)"
