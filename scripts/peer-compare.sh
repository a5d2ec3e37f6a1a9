#!/usr/bin/env bash
# Side-by-side speed against the Python peer (timm 1.0.28 on Debian's PyTorch with OpenBLAS, 2 threads): the same
# ViT-Tiny / 32 px / patch 4 / batch 64 shape, rounds alternating peer and peftsharp in one run on this machine,
# medians per figure, and the ratios ours / peer. The peer's LoRA has no dropout, so ours runs with dropout=0.
# Each round measures float32 (both sides' defaults) and bfloat16 autocast (peer: scripts/peer_autocast.py; ours:
# perf --precision bf16), each peer run next to ours. The peer runs OpenBLAS's best kernels for this CPU (see below).
# Usage: scripts/peer-compare.sh [ROUNDS=3] [PEER_DIR=/tmp/peer] [PRECISIONS="fp32 bf16"]   (sets the peer up where missing)
set -euo pipefail
ROUNDS=${1:-3}; PEER=${2:-/tmp/peer}; PRECISIONS=${3:-fp32 bf16}
ROOT=$(cd "$(dirname "$0")/.." && pwd); SHARED=$ROOT/../shared/peer
[ -d "$PEER/timm" ] || bash "$SHARED/setup.sh" "$PEER"
# timm 1.0.28 imports torchvision, which the peer's setup does not install.
/usr/bin/python3 -c "import torchvision" 2>/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torchvision >/dev/null
OPENBLAS_DIR=$PEER/openblas/usr/lib/x86_64-linux-gnu/openblas-openmp
# Debian 12's OpenBLAS 0.3.21 does not know every newer CPU model and then falls back to its generic SSE3 kernels
# ("Prescott"): on this machine's Xeon (model 207) that is 62 instead of 219 GFLOP/s. Comparing against that would flatter
# us, so the peer gets the kernel OpenBLAS would pick on a CPU it knows with the same instruction sets.
core=$(LD_LIBRARY_PATH=$OPENBLAS_DIR /usr/bin/python3 "$ROOT/scripts/peer_blas_core.py")
flags=$(grep -m1 '^flags' /proc/cpuinfo)
best=
case " $flags " in
  *" avx512_bf16 "*) best=Cooperlake ;;
  *" avx512f "*) best=SkylakeX ;;
  *" avx2 "*) best=Haswell ;;
esac
if [ -n "$best" ] && [ "${OPENBLAS_CORETYPE:-}" = "" ] && [[ "$core" =~ ^(Prescott|Core2|Penryn|Dunnington|Nehalem|Sandybridge|Katmai|Coppermine|Northwood|Banias|Atom)$ ]]; then
  export OPENBLAS_CORETYPE=$best
  echo "peer: OpenBLAS picked its $core kernels on this CPU; using $best (OPENBLAS_CORETYPE), the best it has for these instruction sets" >&2
else
  echo "peer: OpenBLAS kernels $core${OPENBLAS_CORETYPE:+ (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)}" >&2
fi
dotnet build -c Release "$ROOT/src/PeftSharp.Cli" -m:1 -v q -nologo >/dev/null
CLI="$ROOT/src/PeftSharp.Cli/bin/Release/net10.0/linux-x64/PeftSharp.Cli.dll"
OUT=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
  for p in $PRECISIONS; do
    PEER_RUN=("$SHARED/peer_bench.py"); [ "$p" = bf16 ] && PEER_RUN=("$ROOT/scripts/peer_autocast.py" "$SHARED/peer_bench.py")
    LD_LIBRARY_PATH=$OPENBLAS_DIR /usr/bin/python3 "${PEER_RUN[@]}" \
      --timm-src "$PEER/timm" --threads 2 --modes full,lora,infer --json "$OUT/peer-$p-$r.json" >/dev/null
    dotnet "$CLI" perf --methods full,lora --set dropout=0 --threads 2 --precision "$p" --json > "$OUT/ours-$p-$r.json"
  done
  echo "round $r/$ROUNDS done" >&2
done
PEER_CORE="${OPENBLAS_CORETYPE:-$core}" python3 - "$OUT" "$ROUNDS" $PRECISIONS <<'EOF'
import json, statistics, sys
out, rounds, precisions = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
names = {"full": "full fine-tuning, training", "lora": "LoRA r=8 on qkv, training", "infer": "inference (merged LoRA)"}
print("| precision | figure (images/s) | PyTorch + timm, median | PeftSharp, median | ours / peer |")
print("|---|---|---|---|---|")
medians = {}
for prec in precisions:
    peer = {k: [] for k in names}
    ours = {k: [] for k in names}
    for r in range(1, rounds + 1):
        p = json.load(open(f"{out}/peer-{prec}-{r}.json"))
        for k in peer: peer[k].append(p[k]["images_per_s"])
        o = {m["method"]: m for m in json.load(open(f"{out}/ours-{prec}-{r}.json"))["methods"]}
        ours["full"].append(o["full"]["train_images_per_s"])
        ours["lora"].append(o["lora"]["train_images_per_s"])
        ours["infer"].append(o["lora"]["infer_merged_images_per_s"] or o["full"]["infer_images_per_s"])
    for k in names:
        a, b = statistics.median(peer[k]), statistics.median(ours[k])
        medians[(prec, k)] = (a, b)
        print(f"| {prec} | {names[k]} | {a:.1f} ({', '.join(f'{v:.1f}' for v in peer[k])}) | {b:.1f} ({', '.join(f'{v:.1f}' for v in ours[k])}) | {b / a:.2f}x |")
print()
for prec in precisions:
    (pf, of), (pl, ol) = medians[(prec, "full")], medians[(prec, "lora")]
    print(f"{prec}: LoRA vs full fine-tuning: PyTorch {pl / pf:.2f}x, PeftSharp {ol / of:.2f}x")
if "fp32" in precisions and "bf16" in precisions:
    print("PeftSharp bf16 against PyTorch's float32 default: " +
          ", ".join(f"{k} {medians[('bf16', k)][1] / medians[('fp32', k)][0]:.2f}x" for k in names))
import os
print(f"({rounds} alternating rounds; the peer's OpenBLAS kernels: {os.environ.get('PEER_CORE', 'unknown')})")
EOF
