#!/usr/bin/env bash
# Side-by-side speed against the Python peer (timm 1.0.28 on Debian's PyTorch with OpenBLAS, 2 threads): the same
# ViT-Tiny / 32 px / patch 4 / batch 64 shape, rounds alternating peer and peftsharp in one run on this machine,
# medians per figure, and the ratios ours / peer. The peer's LoRA has no dropout, so ours runs with dropout=0.
# Usage: scripts/peer-compare.sh [ROUNDS=3] [PEER_DIR=/tmp/peer]   (sets the peer up where it is missing)
set -euo pipefail
ROUNDS=${1:-3}; PEER=${2:-/tmp/peer}
ROOT=$(cd "$(dirname "$0")/.." && pwd); SHARED=$ROOT/../shared/peer
[ -d "$PEER/timm" ] || bash "$SHARED/setup.sh" "$PEER"
# timm 1.0.28 imports torchvision, which the peer's setup does not install.
/usr/bin/python3 -c "import torchvision" 2>/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-torchvision >/dev/null
dotnet build -c Release "$ROOT/src/PeftSharp.Cli" -m:1 -v q -nologo >/dev/null
CLI="$ROOT/src/PeftSharp.Cli/bin/Release/net10.0/linux-x64/PeftSharp.Cli.dll"
OUT=$(mktemp -d)
for r in $(seq 1 "$ROUNDS"); do
  LD_LIBRARY_PATH=$PEER/openblas/usr/lib/x86_64-linux-gnu/openblas-openmp /usr/bin/python3 "$SHARED/peer_bench.py" \
    --timm-src "$PEER/timm" --threads 2 --modes full,lora,infer --json "$OUT/peer$r.json" >/dev/null
  dotnet "$CLI" perf --methods full,lora --set dropout=0 --threads 2 --json > "$OUT/ours$r.json"
  echo "round $r/$ROUNDS done" >&2
done
python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
peer = {k: [] for k in ("full", "lora", "infer")}
ours = {k: [] for k in ("full", "lora", "infer")}
for r in range(1, rounds + 1):
    p = json.load(open(f"{out}/peer{r}.json"))
    for k in peer: peer[k].append(p[k]["images_per_s"])
    o = {m["method"]: m for m in json.load(open(f"{out}/ours{r}.json"))["methods"]}
    ours["full"].append(o["full"]["train_images_per_s"])
    ours["lora"].append(o["lora"]["train_images_per_s"])
    ours["infer"].append(o["lora"]["infer_merged_images_per_s"] or o["full"]["infer_images_per_s"])
print("| figure (images/s) | PyTorch + timm, median | PeftSharp, median | ours / peer |")
print("|---|---|---|---|")
names = {"full": "full fine-tuning, training", "lora": "LoRA r=8 on qkv, training", "infer": "inference (merged LoRA)"}
for k in ("full", "lora", "infer"):
    a, b = statistics.median(peer[k]), statistics.median(ours[k])
    print(f"| {names[k]} | {a:.1f} ({', '.join(f'{v:.1f}' for v in peer[k])}) | {b:.1f} ({', '.join(f'{v:.1f}' for v in ours[k])}) | {b / a:.2f}x |")
print(f"\nLoRA vs full fine-tuning: PyTorch {statistics.median(peer['lora']) / statistics.median(peer['full']):.2f}x, "
      f"PeftSharp {statistics.median(ours['lora']) / statistics.median(ours['full']):.2f}x ({rounds} alternating rounds)")
EOF
