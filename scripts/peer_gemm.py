#!/usr/bin/env python3
"""The machine's GEMM rate as the peer's PyTorch sees it: a square N×N·N×N matmul in float32 (OpenBLAS) and in
bfloat16 (oneDNN), each timed alternately REPEATS times after one warm-up, median time -> GFLOP/s (2·N³ per product).
peer-compare.sh runs it between the speed figures, so the fraction-of-GEMM-rate columns share their minutes.
Usage: peer_gemm.py [--n 2048] [--repeats 7] [--threads 2] [--json OUT]"""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=2048)
    ap.add_argument('--repeats', type=int, default=7)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--json', default='')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    operands = {'fp32': [torch.randn(args.n, args.n, generator=g) for _ in range(2)]}
    operands['bf16'] = [t.to(torch.bfloat16) for t in operands['fp32']]
    times = {p: [] for p in operands}
    with torch.no_grad():
        for i in range(args.repeats + 1):
            for p, (a, b) in operands.items():   # interleaved, so a busy minute slows both alike
                t0 = time.perf_counter()
                torch.matmul(a, b)
                if i > 0:
                    times[p].append(time.perf_counter() - t0)
    flop = 2.0 * args.n ** 3
    result = {'n': args.n, 'threads': torch.get_num_threads(), 'torch': torch.__version__,
              **{f'{p}_gflops': round(flop / statistics.median(t) / 1e9, 1) for p, t in times.items()},
              **{f'{p}_gflops_rounds': [round(flop / x / 1e9, 1) for x in t] for p, t in times.items()}}
    print(json.dumps(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
