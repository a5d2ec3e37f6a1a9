#!/usr/bin/python3
"""Makes the tiny VideoMAE .pth fixtures of tests/PeftSharp.Tests/TestData from videomae_tiny.safetensors (the
weights MCG-NJU/VideoMAE's code produced, see ../shared/fixtures/parity/README.md), in the layouts VideoMAE's
releases use. Run once with Debian's python3-torch (1.13): /usr/bin/python3 scripts/make_videomae_pth.py

- videomae_tiny.pth: a fine-tuning checkpoint as VideoMAE's utils.save_model writes it: {'model': state_dict,
  'epoch', 'args': argparse.Namespace}, the state dict's tensors as torch.save stores them (zip, one storage per
  tensor); one tensor is a strided view of a shared storage (as a transposed weight would be).
- videomae_tiny_pretrain.pth: a pretraining checkpoint {'model': ...}: the encoder under 'encoder.' (with its final
  'norm', no head, no fc_norm), a decoder, 'encoder_to_decoder' and 'mask_token' (dropped when loading).
- videomae_tiny_unknown.pth: {'module': {...}} with a key VideoMAE's model does not have.
"""
import argparse, json, os, struct, sys
from collections import OrderedDict
import torch

here = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'PeftSharp.Tests', 'TestData')


def read_safetensors(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'I64': torch.int64}
    out = OrderedDict()
    for k, v in header.items():
        if k == '__metadata__':
            continue
        a, b = v['data_offsets']
        out[k] = torch.frombuffer(bytearray(data[a:b]), dtype=dtypes[v['dtype']]).reshape(v['shape']).clone()
    return out


sd = read_safetensors(os.path.join(here, 'videomae_tiny.safetensors'))
# A weight stored as the transpose of a contiguous tensor: the pickle records its strides.
w = sd['blocks.1.mlp.fc2.weight']
sd['blocks.1.mlp.fc2.weight'] = w.t().contiguous().t()
assert not sd['blocks.1.mlp.fc2.weight'].is_contiguous()
args = argparse.Namespace(model='vit_tiny_patch8', num_frames=4, tubelet_size=2, input_size=32, nb_classes=7)
torch.save({'model': sd, 'epoch': 3, 'args': args}, os.path.join(here, 'videomae_tiny.pth'))

torch.manual_seed(0)
pre = OrderedDict()
for k, v in sd.items():
    if k.startswith('head.') or k.startswith('fc_norm.'):
        continue
    pre['encoder.' + k] = v
pre['encoder.norm.weight'] = torch.ones(64)
pre['encoder.norm.bias'] = torch.zeros(64)
pre['mask_token'] = torch.zeros(1, 1, 32)
pre['encoder_to_decoder.weight'] = torch.randn(32, 64) * 0.02
pre['decoder.norm.weight'] = torch.ones(32)
pre['decoder.norm.bias'] = torch.zeros(32)
pre['decoder.head.weight'] = torch.randn(3 * 2 * 8 * 8, 32) * 0.02
pre['decoder.head.bias'] = torch.zeros(3 * 2 * 8 * 8)
torch.save({'model': pre}, os.path.join(here, 'videomae_tiny_pretrain.pth'))

unknown = OrderedDict((k, sd[k]) for k in ['patch_embed.proj.weight', 'patch_embed.proj.bias'])
unknown['blocks.0.attn.relative_position_bias_table'] = torch.zeros(3, 4)
torch.save({'module': unknown}, os.path.join(here, 'videomae_tiny_unknown.pth'))
print('wrote', ', '.join(f for f in sorted(os.listdir(here)) if f.endswith('.pth')))
