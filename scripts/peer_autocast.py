"""Runs the shared peer benchmark (peer_bench.py) with timm's VisionTransformer.forward under
torch.autocast("cpu", bfloat16), logits cast back to float32: the Python counterpart of `peftsharp perf
--precision bf16`, whose forward and loss run the same way. Usage: peer_autocast.py PEER_BENCH.py [its arguments]"""
import os
import runpy
import sys

import torch


def main():
    bench, args = sys.argv[1], sys.argv[2:]
    timm_src = args[args.index('--timm-src') + 1] if '--timm-src' in args else os.environ.get('PEER_TIMM_SRC', '/tmp/peer/timm')
    sys.path.insert(0, timm_src)
    import timm.models.vision_transformer as vt
    plain_forward = vt.VisionTransformer.forward

    def autocast_forward(self, x):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return plain_forward(self, x).float()

    vt.VisionTransformer.forward = autocast_forward
    sys.argv = [bench] + args
    runpy.run_path(bench, run_name='__main__')


if __name__ == '__main__':
    main()
