"""Post-training int8 quantization (torch), behind one function so the backend can switch.

In `model/` because loading an int8 artifact in torch builds its int8 modules with it: serving needs
it, and serving never imports the offline job (`streamproc.compress`).

``torch.ao.quantization.quantize_dynamic`` stores every ``nn.Linear`` weight as int8 (per-tensor,
symmetric) and quantizes activations on the fly, per call. It is deprecated in favour of torchao,
but torchao's CPU int8 path measured slower here (pytorch/ao #4365), so this stays the default.
The student is built from plain ``nn.Linear`` blocks, so every projection is converted.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

__all__ = ["quantize_int8"]


def quantize_int8(model: nn.Module) -> nn.Module:
    """fp32 model in, int8 dynamic-quantized copy out (input untouched), in eval mode."""
    source = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # quantize_dynamic's deprecation notice
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(source, {nn.Linear}, dtype=torch.qint8)
    return quantized.eval()
