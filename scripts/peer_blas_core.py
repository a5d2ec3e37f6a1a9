#!/usr/bin/env python3
"""Prints the kernel set ("core") of the OpenBLAS that the peer's PyTorch loaded, e.g. SkylakeX or Prescott."""
import ctypes

import torch  # noqa: F401  (loads libblas through PyTorch, as the peer does)

paths = sorted({line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line and '.so' in line})
for path in paths:
    try:
        lib = ctypes.CDLL(path)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        print(lib.openblas_get_corename().decode())
        break
    except (OSError, AttributeError):
        continue
else:
    print('unknown')
