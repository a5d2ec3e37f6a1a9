#!/usr/bin/env bash
# Renders a benchmark report (default ./peftsharp-report/report.html) in headless Chromium, writes a full-page
# screenshot next to it, and fails when the page logs a console error or the screenshot is missing or blank.
# Installs Debian's chromium first where it is absent (root, as on CI and the developers' machines).
set -euo pipefail
report=$(realpath "${1:-peftsharp-report/report.html}")
shot=${2:-${report%.html}.png}
[ -f "$report" ] || { echo "check-report: $report: no such report (run 'peftsharp bench' first)" >&2; exit 2; }
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
log=$(mktemp)
profile=$(mktemp -d)
trap 'rm -rf "$log" "$profile"' EXIT
# --enable-logging=stderr --v=0 makes Chromium print every console message as "...:CONSOLE(line)] ...".
timeout 120 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
  --enable-logging=stderr --v=0 --window-size=1280,6000 --screenshot="$shot" "file://$report" 2>"$log" >/dev/null || true
if grep -E ":CONSOLE\([0-9]+\)\]" "$log" | grep -qiE "error|uncaught"; then
  echo "check-report: $report logged console errors:" >&2
  grep -E ":CONSOLE\([0-9]+\)\]" "$log" >&2
  exit 1
fi
[ -s "$shot" ] || { echo "check-report: no screenshot written; chromium said:" >&2; tail -5 "$log" >&2; exit 1; }
# A blank page compresses to almost nothing: a real report's screenshot is tens of kilobytes at least.
size=$(stat -c %s "$shot")
[ "$size" -gt 20000 ] || { echo "check-report: $shot is only $size bytes: the page rendered blank" >&2; exit 1; }
echo "check-report: $report rendered without console errors; screenshot $shot ($size bytes)"
