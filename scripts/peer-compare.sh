#!/usr/bin/env bash
# Side-by-side speed against the Python peer (timm 1.0.28 on Debian's PyTorch with OpenBLAS, 2 threads), in one run on
# this machine, at two shapes: ViT-Tiny at 32 px / patch 4 / batch 64 (65 tokens; "32") and ViT-Tiny at 224 px /
# patch 16 / batch 8 (197 tokens; "224", a realistic fine-tuning shape small enough for 2 cores), each in float32
# (both sides' defaults) and bfloat16 autocast (peer: scripts/peer_autocast.py; ours: perf --precision bf16).
# Per round, shape, precision and figure the peer runs, then peftsharp; the table gives the median of the rounds'
# ours / peer ratios. The peer's LoRA has no dropout, so ours runs with dropout=0. The peer is scripts/peer_bench.py:
# the shared ../shared/peer/peer_bench.py with the shape as options. Each round also measures the machine's GEMM rate
# (a 2048³ product in float32 and bf16, with the peer's PyTorch and with ours: scripts/peer_gemm.py, perf --gemm), and
# each figure is also given as a share of it: model FLOPs per image × images/s ÷ the faster library's GEMM FLOP/s.
# The peer runs OpenBLAS's best kernels for this CPU.
# Usage: scripts/peer-compare.sh [ROUNDS=3] [PEER_DIR=/tmp/peer] [PRECISIONS="fp32 bf16"] [SHAPES="32 224"]
#        (sets the peer up where missing)
set -euo pipefail
ROUNDS=${1:-3}; PEER=${2:-/tmp/peer}; PRECISIONS=${3:-fp32 bf16}; SHAPES=${4:-32 224}
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
echo "peer-compare: raw measurements in $OUT; start: $(uptime)" >&2
# Each figure's two sides run back to back (peer, then ours), so drift on a shared machine hits a pair alike; the
# ratio is taken per round, from that pair. At 32 px both sides time 6 steps after 4 warm-up steps (ours: 2 memory
# steps and 2 warm-up steps) and take the median step time; at 224 px, a step of 12x the arithmetic per image, 3 after
# 3 (ours: 2 memory steps, 1 warm-up step), so that a round stays short.
shape_args() {   # $1 = shape: sets PEER_SHAPE and OURS_SHAPE (model, batch and step counts of each side)
  case "$1" in
    32) PEER_SHAPE=(--batch 64 --warmup 4 --steps 6); OURS_SHAPE=(--model vit_tiny_patch4_32 --batch 64 --warmup 2 --steps 6) ;;
    224) PEER_SHAPE=(--img-size 224 --patch-size 16 --batch 8 --warmup 3 --steps 3)
         OURS_SHAPE=(--model vit_tiny_patch16_224 --batch 8 --warmup 1 --steps 3) ;;
    *) echo "peer-compare.sh: unknown shape '$1' (expected 32 or 224)" >&2; exit 2 ;;
  esac
}
for s in $SHAPES; do shape_args "$s"; done   # an unknown shape fails before the first round, not after an hour
for r in $(seq 1 "$ROUNDS"); do
  # This round's ceiling: the peer's PyTorch and ours each multiply two 2048² matrices in float32 and in bf16.
  LD_LIBRARY_PATH=$OPENBLAS_DIR /usr/bin/python3 "$ROOT/scripts/peer_gemm.py" --threads 2 --json "$OUT/gemm-peer-$r.json" >/dev/null
  dotnet "$CLI" perf --gemm 2048 --threads 2 > "$OUT/gemm-ours-$r.json"
  for s in $SHAPES; do
    shape_args "$s"
    for p in $PRECISIONS; do
      PEER_RUN=("$ROOT/scripts/peer_bench.py"); [ "$p" = bf16 ] && PEER_RUN=("$ROOT/scripts/peer_autocast.py" "$ROOT/scripts/peer_bench.py")
      for figure in full lora; do
        modes=$figure; set_dropout=(); [ "$figure" = lora ] && modes=lora,infer && set_dropout=(--set dropout=0)
        LD_LIBRARY_PATH=$OPENBLAS_DIR /usr/bin/python3 "${PEER_RUN[@]}" \
          --timm-src "$PEER/timm" --threads 2 "${PEER_SHAPE[@]}" --modes "$modes" --json "$OUT/peer-$s-$p-$figure-$r.json" >/dev/null
        dotnet "$CLI" perf "${OURS_SHAPE[@]}" --methods "$figure" "${set_dropout[@]}" --threads 2 --precision "$p" --no-baseline --json \
          > "$OUT/ours-$s-$p-$figure-$r.json"
      done
    done
    echo "round $r/$ROUNDS: $s px done ($(uptime | sed 's/.*load/load/'))" >&2
  done
done
echo "peer-compare: end: $(uptime)" >&2
PEER_CORE="${OPENBLAS_CORETYPE:-$core}" python3 "$ROOT/scripts/peer_compare_table.py" "$OUT" "$ROUNDS" "$PRECISIONS" "$SHAPES"
