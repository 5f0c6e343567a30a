"""Research script: ONNX Runtime int8 latency of candidate student shapes (random weights,
exported with ``export_fused_onnx``, dynamic int8) against the shipped ``builtin:trec`` graph, one
thread, round-robin, through ``OnnxEngine`` on random test questions padded as one batch.

    .venv/bin/python docs/results/trec-teacher-cut/latency.py '{"A":[[3,3,3],[256,256,256],384]}'

Each shape: [heads per layer, FFN per layer, width(, "pre"|"post", table width or null, eps)].
"""
import json, sys, tempfile, time, statistics
from pathlib import Path
import numpy as np, torch
from streamproc.model.network import StudentConfig, StudentNetwork, count_params
from streamproc.model.onnx import export_fused_onnx, quantize_onnx
from streamproc.model.runtime import OnnxEngine
from streamproc.model.tokenizer import StudentTokenizer
from streamproc.compress.data import load_dataset
from streamproc.settings import default_cache_dir
art = Path("streamproc/resources/models/trec")
man = json.loads((art/"manifest.json").read_text())
tok = StudentTokenizer.from_file(art/"tokenizer.json", 64)
data = load_dataset("trec", cache_dir=default_cache_dir())
shapes = json.loads(sys.argv[1])  # name -> [heads list, ffn list]
work = Path(tempfile.mkdtemp(prefix="latency-"))
engines = {"shipped": OnnxEngine.from_file(art/man["runtime"]["file"], num_threads=1)}
for name, (h, f, *rest) in shapes.items():
    dim = rest[0] if rest else 384
    norm = rest[1] if len(rest) > 1 else ("pre" if dim == 128 else "post")
    emb = rest[2] if len(rest) > 2 else (None if dim == 128 else 128)
    cfg = StudentConfig(vocab_size=8000, num_labels=6, dim=dim, head_dim=32, layer_heads=tuple(h), layer_ffn=tuple(f), norm=norm, embed_dim=emb, norm_eps=float(rest[3]) if len(rest) > 3 else 1e-12, dropout=0.0)
    net = StudentNetwork(cfg).eval()
    p = export_fused_onnx(net, work / f"{name}.onnx")
    q = quantize_onnx(p, work / f"{name}-int8.onnx")
    engines[name] = OnnxEngine.from_file(q, num_threads=1)
    print(name, f"{count_params(net)/1e6:.2f} M params", flush=True)
rng = np.random.default_rng(0)
for batch, n in ((1, 400), (64, 60)):
    times = {k: [] for k in engines}
    for i in range(n):
        idx = rng.choice(500, batch, replace=False)
        ids, mask = tok.encode_batch([data.test_texts[j] for j in idx])
        ids, mask = ids.numpy(), mask.numpy().astype(bool)
        for k, e in engines.items():
            t = time.perf_counter(); e(ids, mask); times[k].append(time.perf_counter() - t)
    base = statistics.median(times["shipped"])
    print(f"batch {batch}: " + ", ".join(f"{k} {statistics.median(v)*1e3:.2f} ms ({statistics.median(v)/base:.2f}x)" for k, v in times.items()), flush=True)
