"""int8 dynamic quantization: every Linear converted, outputs close to fp32, input untouched."""

from __future__ import annotations

import torch

from streamproc.model.network import StudentConfig, StudentNetwork, count_params
from streamproc.model.quantize import quantize_int8


def test_quantized_agrees_with_fp32_within_tolerance() -> None:
    torch.manual_seed(0)
    net = StudentNetwork(
        StudentConfig(
            vocab_size=200,
            num_labels=4,
            max_tokens=24,
            dim=64,
            head_dim=16,
            layer_heads=(4, 4),
            layer_ffn=(128, 128),
            dropout=0.0,
        )
    ).eval()
    q = quantize_int8(net)
    linears = [m for m in q.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears, "every nn.Linear must become a dynamic int8 Linear"
    assert isinstance(net.classifier, torch.nn.Linear), "the fp32 input must be left alone"
    assert count_params(q) == count_params(net)
    ids = torch.randint(5, 200, (32, 20))
    mask = torch.ones(32, 20, dtype=torch.bool)
    with torch.inference_mode():
        ref, out = net(ids, mask), q(ids, mask)
    rel = (out - ref).norm() / ref.norm()
    assert float(rel) < 0.05
    assert float((out.argmax(-1) == ref.argmax(-1)).float().mean()) >= 0.9
