#!/usr/bin/env python3
"""CPU peer baseline: timm ViT (default ViT-Tiny: embed 192, depth 12, heads 3, patch 4, img 32, 10 classes)
training-step and inference throughput (images/s) on the Python reference stack. A copy of the shared
../shared/peer/peer_bench.py with the shape as options (--img-size 224 --patch-size 16 for ViT-Ti/16 at 224 px);
at its defaults it measures what the shared one does.

Settings:
  full  : all parameters trainable, AdamW, cross-entropy
  lora  : all base weights frozen; rank-r LoRA on every block's attn.qkv
          (out = qkv(x) + (x @ A^T) @ B^T * alpha/r, A: r x in ~ N(0, 0.01), B: out x r zeros),
          plus head.weight / head.bias trainable; AdamW, cross-entropy
  infer : eval(), torch.no_grad(), forward only

Timing: steps 1..W are warm-up, steps W+1..W+S are timed (default W=3, S=5 -> steps 4-8).
Our own code; imports timm from --timm-src / PEER_TIMM_SRC.

Usage: python3 peer_bench.py [--threads N] [--batch 64] [--modes full,lora,infer]
                             [--img-size 32] [--patch-size 4] [--embed-dim 192] [--depth 12] [--heads 3]
"""
import argparse
import json
import os
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--timm-src', default=os.environ.get('PEER_TIMM_SRC', '/tmp/peer/timm'))
    ap.add_argument('--threads', type=int, default=0, help='0 = leave torch default')
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--steps', type=int, default=5)
    ap.add_argument('--rank', type=int, default=8)
    ap.add_argument('--modes', default='full,lora,infer')
    ap.add_argument('--img-size', type=int, default=32)
    ap.add_argument('--patch-size', type=int, default=4)
    ap.add_argument('--embed-dim', type=int, default=192)
    ap.add_argument('--depth', type=int, default=12)
    ap.add_argument('--heads', type=int, default=3)
    ap.add_argument('--json', default='', help='optional path to write results as JSON')
    args = ap.parse_args()

    if args.timm_src and args.timm_src not in sys.path:
        sys.path.insert(0, args.timm_src)
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import timm
    from timm.models.vision_transformer import VisionTransformer

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    cfg = dict(img_size=args.img_size, patch_size=args.patch_size, embed_dim=args.embed_dim, depth=args.depth,
               num_heads=args.heads, mlp_ratio=4.0,
               num_classes=10, qkv_bias=True, class_token=True, global_pool='token')

    class LoRAQKV(nn.Module):
        def __init__(self, base: nn.Linear, r: int, alpha: float, gen):
            super().__init__()
            self.base = base
            self.lora_A = nn.Parameter(torch.randn(r, base.in_features, generator=gen) * 0.01)
            self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
            self.scale = alpha / r

        def forward(self, x):
            return self.base(x) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale

    def make_model(mode):
        torch.manual_seed(0)
        m = VisionTransformer(**cfg)
        if mode == 'lora':
            for p in m.parameters():
                p.requires_grad_(False)
            g = torch.Generator().manual_seed(1)
            for blk in m.blocks:
                blk.attn.qkv = LoRAQKV(blk.attn.qkv, args.rank, float(args.rank), g)
            for p in m.head.parameters():
                p.requires_grad_(True)
        return m

    g = torch.Generator().manual_seed(123)
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, generator=g)
    y = torch.randint(0, 10, (args.batch,), generator=g)

    results = {'torch': torch.__version__, 'timm': timm.__version__,
               'num_threads': torch.get_num_threads(), 'batch': args.batch, 'model': cfg,
               'timed_steps': f'{args.warmup + 1}-{args.warmup + args.steps}'}
    for mode in args.modes.split(','):
        m = make_model(mode)
        n_train = sum(p.numel() for p in m.parameters() if p.requires_grad)
        if mode == 'infer':
            m.eval()

            def step():
                with torch.no_grad():
                    m(x)
        else:
            m.train()
            opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4,
                                    weight_decay=0.05)

            def step():
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(m(x), y)
                loss.backward()
                opt.step()
        times = []
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            step()
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt)
        total = sum(times)
        ips = args.batch * len(times) / total
        results[mode] = {'images_per_s': round(ips, 2), 'sec_per_step': round(total / len(times), 3),
                         'step_times': [round(t, 3) for t in times], 'trainable_params': n_train}
        print(f'{mode:5s}: {ips:8.2f} img/s  ({total / len(times):.3f} s/step, '
              f'steps {[round(t, 2) for t in times]}, trainable={n_train})', flush=True)
    print(json.dumps(results))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)


if __name__ == '__main__':
    main()
