#!/usr/bin/env bash
# The test command: restores, builds (which patches TorchSharp's native library where the system needs it) and
# runs every test; prints a plain "N passed, N failed" closing line and exits non-zero when a test fails.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
dotnet test -c Release tests/PeftSharp.Tests/PeftSharp.Tests.csproj --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E "^(Passed|Failed)!" "$log" | tail -1)
passed=$(sed -nE 's/.*Passed: +([0-9]+).*/\1/p' <<<"$summary")
failed=$(sed -nE 's/.*Failed: +([0-9]+).*/\1/p' <<<"$summary")
rm -f "$log"
if [ -n "$passed" ]; then
  echo "tests: ${passed} passed, ${failed:-0} failed"
fi
exit "$status"
