#!/usr/bin/env bash
# Packs the peftsharp command as a .NET tool for this machine's platform and installs it, globally
# (~/.dotnet/tools) or into the folder given as the first argument. The shipped models travel inside the package,
# next to the assembly, so the installed tool runs from any folder.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=$(mktemp -d)
trap 'rm -rf "$packages"' EXIT
dotnet pack -c Release src/PeftSharp.Cli -o "$packages" >/dev/null
if [ $# -ge 1 ]; then where=(--tool-path "$1"); else where=(--global); fi
dotnet tool uninstall "${where[@]}" PeftSharp.Cli >/dev/null 2>&1 || true
dotnet tool install "${where[@]}" --add-source "$packages" PeftSharp.Cli
