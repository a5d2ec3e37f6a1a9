#!/usr/bin/env python3
"""The Markdown tables of scripts/peer-compare.sh from its raw measurements (one JSON per run):
gemm-{peer,ours}-ROUND.json, peer-SHAPE-PRECISION-{full,lora}-ROUND.json, ours-SHAPE-PRECISION-{full,lora}-ROUND.json.
Usage: peer_compare_table.py OUT_DIR ROUNDS "PRECISIONS" "SHAPES"   (PEER_CORE names the peer's OpenBLAS kernels)"""
import json
import os
import statistics
import sys

NAMES = {"full": "full fine-tuning, training", "lora": "LoRA r=8 on qkv, training", "infer": "inference (merged LoRA)"}
RUN_OF = {"full": "full", "lora": "lora", "infer": "lora"}   # which pair of runs measured the figure
med = statistics.median


def load(path):
    with open(path) as f:
        return json.load(f)


def fmt(values, digits=2):
    return ", ".join(f"{v:.{digits}f}" for v in values)


def peer_rate(p, mode):
    """Images/s from the median step time: the statistic our perf reports."""
    return p["batch"] / med(p[mode]["step_times"])


def ours_rate(o, figure):
    m = o["methods"][0]
    return m["infer_merged_images_per_s"] if figure == "infer" else m["train_images_per_s"]


def flops_per_image(model, figure, rank=8):
    """Nominal FLOPs of one image through timm's ViT, counted from the shape and the same for both sides (ours runs
    the last block on the class token only, which this does not count). Forward: 2 FLOPs per weight and token (the
    patch embedding, 12·D² per block, the head on the class token) plus attention's two T×T×D products per block.
    Full fine-tuning: 3× the forward (input and weight gradients). LoRA: the frozen weights need input gradients only
    (2× their forward; none for the patch embedding, whose input is the image), attention's backward is 2× its
    forward, the trained head and the adapters (r·4D weights per block) 3×. Inference: the forward."""
    d, depth, img, patch = model["embed_dim"], model["depth"], model["img_size"], model["patch_size"]
    n = (img // patch) ** 2
    t = n + 1
    embed, linear = 2 * 3 * patch * patch * d * n, depth * 2 * 12 * d * d * t
    attention, head = depth * 2 * 2 * t * t * d, 2 * d * model["num_classes"]
    forward = embed + linear + attention + head
    if figure == "infer":
        return forward
    if figure == "full":
        return 3 * forward
    return forward + linear + 2 * attention + 2 * head + 3 * depth * 2 * rank * 4 * d * t


def main():
    out, rounds, precisions, shapes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
    rs = range(1, rounds + 1)
    # The machine's GEMM rate per round and precision: the faster of the two libraries on a 2048³ product.
    gemm_of = {(side, r): load(f"{out}/gemm-{side}-{r}.json") for side in ("peer", "ours") for r in rs}
    gemm = {(p, r): max(gemm_of[("peer", r)][f"{p}_gflops"], gemm_of[("ours", r)][f"{p}_gflops"]) * 1e9
            for p in ("fp32", "bf16") for r in rs}
    print("| GEMM 2048³, GFLOP/s: median (rounds) | PyTorch 1.13 (peer) | PeftSharp (libtorch 2.10) | ours / peer |")
    print("|---|---|---|---|")
    for p in ("fp32", "bf16"):
        peer = [gemm_of[("peer", r)][f"{p}_gflops"] for r in rs]
        ours = [gemm_of[("ours", r)][f"{p}_gflops"] for r in rs]
        print(f"| {p} | {med(peer):.1f} ({fmt(peer, 1)}) | {med(ours):.1f} ({fmt(ours, 1)}) | "
              f"{med(o / q for o, q in zip(ours, peer)):.2f}x |")
    bf16_over_fp32 = [gemm[("bf16", r)] / gemm[("fp32", r)] for r in rs]
    print(f"\nThe GEMM rate a figure is read against is the faster library's in its round; bf16 / fp32: "
          f"{med(bf16_over_fp32):.2f}x ({fmt(bf16_over_fp32)}).\n")

    print("| shape | precision | figure | ours / peer: median (rounds) | PeftSharp: share of the GEMM rate | peer: share of the GEMM rate |")
    print("|---|---|---|---|---|---|")
    medians = {}
    for s in shapes:
        for prec in precisions:
            for k in NAMES:
                peer_runs = [load(f"{out}/peer-{s}-{prec}-{RUN_OF[k]}-{r}.json") for r in rs]
                ours_runs = [load(f"{out}/ours-{s}-{prec}-{RUN_OF[k]}-{r}.json") for r in rs]
                peer = [peer_rate(p, k) for p in peer_runs]
                ours = [ours_rate(o, k) for o in ours_runs]
                flops = flops_per_image(peer_runs[0]["model"], k)
                share_ours = [flops * v / gemm[(prec, r)] for v, r in zip(ours, rs)]
                share_peer = [flops * v / gemm[(prec, r)] for v, r in zip(peer, rs)]
                ratios = [b / a for a, b in zip(peer, ours)]
                medians[(s, prec, k)] = dict(peer=med(peer), ours=med(ours), ratio=med(ratios), share=med(share_ours))
                shape = f"{s} px, batch {peer_runs[0]['batch']}, {flops / 1e9:.2f} GFLOP/image"
                print(f"| {shape} | {prec} | {NAMES[k]} | **{med(ratios):.2f}x** ({fmt(ratios)}) | "
                      f"{med(share_ours):.0%} ({fmt(share_ours)}) | {med(share_peer):.0%} ({fmt(share_peer)}) |")
    print()
    for s in shapes:
        for prec in precisions:
            full, lora = medians[(s, prec, "full")], medians[(s, prec, "lora")]
            print(f"{s} px {prec}: LoRA vs full fine-tuning: PyTorch {lora['peer'] / full['peer']:.2f}x, "
                  f"PeftSharp {lora['ours'] / full['ours']:.2f}x")
        if "fp32" in precisions and "bf16" in precisions:
            def speedup(side):
                return ", ".join(f"{k} {medians[(s, 'bf16', k)][side] / medians[(s, 'fp32', k)][side]:.2f}x" for k in NAMES)
            print(f"{s} px, bf16 over fp32 (medians): PeftSharp {speedup('ours')}; PyTorch {speedup('peer')}")
    if "224" in shapes:
        print("\nTargets of issue 32 at 224 px:")
        if "fp32" in precisions:
            for k in NAMES:
                share = medians[("224", "fp32", k)]["share"]
                print(f"- fp32 {NAMES[k]}: {share:.0%} of the float32 GEMM rate (target >= 85%): "
                      f"{'met' if share >= 0.85 else 'not met'}")
        if "bf16" in precisions:
            for k in ("lora", "infer"):
                ratio = medians[("224", "bf16", k)]["ratio"]
                print(f"- bf16 {NAMES[k]}: {ratio:.2f}x the peer's bf16 (target >= 1.3x): {'met' if ratio >= 1.3 else 'not met'}")
    print(f"\n({rounds} rounds, each figure's peer and PeftSharp runs back to back; the peer's OpenBLAS kernels: "
          f"{os.environ.get('PEER_CORE', 'unknown')})")


if __name__ == "__main__":
    main()
