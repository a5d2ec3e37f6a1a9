#!/usr/bin/env bash
# The library package stays usable: packs PeftSharp and PeftSharp.Studies into artifacts/packages, restores
# examples/QuickStart from that folder feed (as an application restores from nuget.org), builds it and runs the
# README's C# quick start on a task of the built-in suite in a scratch folder. Prints "package smoke: passed" or
# fails naming the step. Needs the solution built (Release), as scripts/test.sh leaves it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fail() { echo "package smoke: FAILED: $*" >&2; exit 1; }
feed=$root/artifacts/packages
rm -rf "$feed"
for p in src/PeftSharp/PeftSharp.csproj src/PeftSharp.Studies/PeftSharp.Studies.csproj; do
  dotnet pack -c Release --no-build --nologo -v quiet "$p" -o "$feed" >/dev/null || fail "dotnet pack $p"
done
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props)
# A package of the same version restored before would be taken from the cache instead of the one just packed.
rm -rf "${NUGET_PACKAGES:-$HOME/.nuget/packages}/peftsharp/$version"
dotnet build -c Release --nologo -v quiet examples/QuickStart/QuickStart.csproj >/dev/null || fail "restore and build examples/QuickStart from $feed"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dotnet src/PeftSharp.Cli/bin/Release/net10.0/*/PeftSharp.Cli.dll suite materialize --out "$work/suite" --tasks digits >/dev/null \
  || fail "materialising the digits task"
ln -s "$work/suite/digits" "$work/my-photos"
cp "$(find "$work/suite/digits" -name '*.png' | sort | head -1)" "$work/photo.png"
app=$(ls "$root"/examples/QuickStart/bin/Release/net10.0/*/QuickStart.dll)
out=$(cd "$work" && dotnet "$app") || fail "running the quick start"
echo "$out"
[ -f "$work/my-adapter/adapter_config.json" ] || fail "the quick start saved no adapter"
echo "$out" | grep -q "^photo.png: " || fail "the quick start printed no prediction"
echo "package smoke: passed (PeftSharp $version from $feed)"
