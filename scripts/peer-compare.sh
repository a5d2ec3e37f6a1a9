#!/usr/bin/env bash
# Side-by-side speed against the Python peer (timm 1.0.28 on Debian's PyTorch with OpenBLAS, 2 threads): the same
# ViT-Tiny / 32 px / patch 4 / batch 64 shape, in one run on this machine. Per round and figure the peer runs, then
# peftsharp; the table gives medians per figure and the median of the rounds' ours / peer ratios. The peer's LoRA has
# no dropout, so ours runs with dropout=0. Each round measures float32 (both sides' defaults) and bfloat16 autocast
# (peer: scripts/peer_autocast.py; ours: perf --precision bf16). The peer runs OpenBLAS's best kernels for this CPU.
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
# Each figure's two sides run back to back (peer, then ours), so drift on a shared machine hits a pair alike; the
# ratio is taken per round, from that pair. Both sides time 6 steps after 4 warm-up steps (ours: 2 memory steps and
# 2 warm-up steps) and take the median step time.
PEER_STEPS=(--warmup 4 --steps 6)
for r in $(seq 1 "$ROUNDS"); do
  for p in $PRECISIONS; do
    PEER_RUN=("$SHARED/peer_bench.py"); [ "$p" = bf16 ] && PEER_RUN=("$ROOT/scripts/peer_autocast.py" "$SHARED/peer_bench.py")
    for figure in full lora; do
      modes=$figure; set_dropout=(); [ "$figure" = lora ] && modes=lora,infer && set_dropout=(--set dropout=0)
      LD_LIBRARY_PATH=$OPENBLAS_DIR /usr/bin/python3 "${PEER_RUN[@]}" \
        --timm-src "$PEER/timm" --threads 2 "${PEER_STEPS[@]}" --modes "$modes" --json "$OUT/peer-$p-$figure-$r.json" >/dev/null
      dotnet "$CLI" perf --methods "$figure" "${set_dropout[@]}" --threads 2 --precision "$p" --no-baseline --json > "$OUT/ours-$p-$figure-$r.json"
    done
  done
  echo "round $r/$ROUNDS done" >&2
done
PEER_CORE="${OPENBLAS_CORETYPE:-$core}" python3 - "$OUT" "$ROUNDS" $PRECISIONS <<'EOF'
import json, statistics, sys
out, rounds, precisions = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
names = {"full": "full fine-tuning, training", "lora": "LoRA r=8 on qkv, training", "infer": "inference (merged LoRA)"}
run_of = {"full": "full", "lora": "lora", "infer": "lora"}   # which pair of runs measured the figure

def peer_rate(p, mode):
    """Images/s from the median step time: the statistic our perf reports."""
    return p["batch"] / statistics.median(p[mode]["step_times"])

def ours_rate(o, figure):
    m = json.load(open(o))["methods"][0]
    return m["infer_merged_images_per_s"] if figure == "infer" else m["train_images_per_s"]

print("| precision | figure (images/s) | PyTorch + timm: median (rounds) | PeftSharp: median (rounds) | ours / peer: median (rounds) |")
print("|---|---|---|---|---|")
medians = {}
fmt = lambda vs, d=1: ", ".join(f"{v:.{d}f}" for v in vs)
for prec in precisions:
    for k in names:
        peer = [peer_rate(json.load(open(f"{out}/peer-{prec}-{run_of[k]}-{r}.json")), k) for r in range(1, rounds + 1)]
        ours = [ours_rate(f"{out}/ours-{prec}-{run_of[k]}-{r}.json", k) for r in range(1, rounds + 1)]
        ratios = [b / a for a, b in zip(peer, ours)]
        medians[(prec, k)] = (statistics.median(peer), statistics.median(ours), statistics.median(ratios))
        a, b, q = medians[(prec, k)]
        print(f"| {prec} | {names[k]} | {a:.1f} ({fmt(peer)}) | {b:.1f} ({fmt(ours)}) | **{q:.2f}x** ({fmt(ratios, 2)}) |")
print()
for prec in precisions:
    (pf, of, _), (pl, ol, _) = medians[(prec, "full")], medians[(prec, "lora")]
    print(f"{prec}: LoRA vs full fine-tuning: PyTorch {pl / pf:.2f}x, PeftSharp {ol / of:.2f}x")
if "fp32" in precisions and "bf16" in precisions:
    print("PeftSharp bf16 against PyTorch's float32 default: " +
          ", ".join(f"{k} {medians[('bf16', k)][1] / medians[('fp32', k)][0]:.2f}x" for k in names))
import os
print(f"({rounds} rounds, each figure's peer and PeftSharp runs back to back; the peer's OpenBLAS kernels: {os.environ.get('PEER_CORE', 'unknown')})")
EOF
