#!/usr/bin/env bash
# The test command: starts the local PostgreSQL server the results-store and sweep tests use (installing Debian's
# postgresql if needed, see start-postgres.sh), restores, builds (which patches TorchSharp's native library where the
# system needs it) and runs every test; prints a plain "N passed, N failed" closing line and exits non-zero when a
# test fails (or the Slurm smoke test does).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PEFTSHARP_TEST_POSTGRES:-}" ]; then
  :   # the caller's own server
elif url=$(./scripts/start-postgres.sh); then
  export PEFTSHARP_TEST_POSTGRES="$url"
else
  # Outside CI the PostgreSQL tests then skip, saying why; under CI=true they fail.
  echo "test.sh: could not start PostgreSQL; its tests will not pass under CI" >&2
fi
# The dense letter tasks draw capitals from Debian's fonts-dejavu-core (on most systems already; installed if missing).
if [ ! -d /usr/share/fonts/truetype/dejavu ]; then
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends fonts-dejavu-core; } >&2 \
    || echo "test.sh: could not install fonts-dejavu-core; the dense letter-task tests will fail" >&2
fi
log=$(mktemp)
dotnet test -c Release tests/PeftSharp.Tests/PeftSharp.Tests.csproj --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The runner's summary block: "Total tests: N", then "Passed: N" / "Failed: N" lines.
passed=$(grep -E "^ +Passed: +[0-9]+$" "$log" | tail -1 | grep -oE "[0-9]+")
failed=$(grep -E "^ +Failed: +[0-9]+$" "$log" | tail -1 | grep -oE "[0-9]+")
rm -f "$log"
# The Slurm smoke test (well under a minute once slurm-wlm is installed): a real sbatch job array of two workers on a
# single-node Slurm. It says "SKIPPED: slurm not available: <reason>" where Slurm cannot be installed or started.
# Only on a full run: extra arguments (a --filter) mean a developer runs a part. Then the package smoke test.
if [ $# -eq 0 ]; then
  smoke=$(./scripts/slurm-smoke.sh 2>&1)
  smoke_status=$?
  echo "$smoke" | tail -4
  [ "$smoke_status" -eq 0 ] || status=1
  # The library package restored from a folder feed by examples/QuickStart, which runs the README's quick start.
  package=$(./scripts/package-smoke.sh 2>&1)
  package_status=$?
  echo "$package" | tail -3
  [ "$package_status" -eq 0 ] || status=1
fi
if [ -n "$passed" ]; then
  echo "tests: ${passed} passed, ${failed:-0} failed"
fi
exit "$status"
