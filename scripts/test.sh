#!/usr/bin/env bash
# The test command: restores, builds (which patches TorchSharp's native library where the system needs it) and
# runs every test; prints a plain "N passed, N failed" closing line and exits non-zero when a test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
dotnet test -c Release tests/PeftSharp.Tests/PeftSharp.Tests.csproj --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The runner's summary block: "Total tests: N", then "Passed: N" / "Failed: N" lines.
passed=$(grep -E "^ +Passed: +[0-9]+$" "$log" | tail -1 | grep -oE "[0-9]+")
failed=$(grep -E "^ +Failed: +[0-9]+$" "$log" | tail -1 | grep -oE "[0-9]+")
rm -f "$log"
if [ -n "$passed" ]; then
  echo "tests: ${passed} passed, ${failed:-0} failed"
fi
exit "$status"
