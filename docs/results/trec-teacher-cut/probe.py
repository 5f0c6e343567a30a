"""Probe (research script, not part of the package): a student cut from the teacher's own layers
(post-LN, BERT's layout), its heads, FFN neurons and optionally residual width chosen by
gradient-of-gate importance *before* distillation, its token table factorised (PCA to 128 + a
learned 128 -> 384 projection). Distils it on the job's own transfer set (the cached teacher and
its labels) and prints the fp32 test accuracy after each epoch, the parameter count, and eager
latency against the shipped student's shape.

    .venv/bin/python docs/results/trec-teacher-cut/probe.py '{"layers":[0,2,4],"heads":3,"ffn":256}'

Keys: seed, layers (teacher layers kept), heads and ffn (kept per layer), width (residual dims
kept, 384 = all), emb (token-table width), epochs, lr, threads, score_batches.
"""
import json, math, random, sys, time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamproc.compress.augment import TransferConfig
from streamproc.compress.data import load_dataset
from streamproc.compress.distill import DistillConfig, evaluate
from streamproc.compress.teacher import TeacherConfig, length_buckets, load_or_train_teacher, teacher_dir
from streamproc.compress.transfer import build_transfer_set
from streamproc.model.tokenizer import StudentTokenizer, build_subset_tokenizer
from streamproc.settings import default_cache_dir
from tqdm import tqdm

args = json.loads(sys.argv[1])
seed = args.get("seed", 0)
LAYERS = args.get("layers", [0, 2, 4])
HEADS = args.get("heads", 3)
FFN = args.get("ffn", 256)
EMB = args.get("emb", 128)
WIDTH = args.get("width", 384)
EPOCHS = args.get("epochs", 3)
LR = args.get("lr", 2e-4)
torch.set_num_threads(args.get("threads", 2))
torch.manual_seed(seed)
random.seed(seed)


class Layer(nn.Module):
    def __init__(self, hf, heads_keep, ffn_keep):
        super().__init__()
        sa, so = hf.attention.self, hf.attention.output
        d = sa.attention_head_size
        self.d, self.h = d, len(heads_keep)
        idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in heads_keep])

        def rows(lin, r):
            new = nn.Linear(lin.in_features, len(r))
            new.weight.data = lin.weight.data[r].clone(); new.bias.data = lin.bias.data[r].clone()
            return new

        def cols(lin, c):
            new = nn.Linear(len(c), lin.out_features)
            new.weight.data = lin.weight.data[:, c].clone(); new.bias.data = lin.bias.data.clone()
            return new

        self.q, self.k, self.v = rows(sa.query, idx), rows(sa.key, idx), rows(sa.value, idx)
        self.o = cols(so.dense, idx)
        self.ln1 = so.LayerNorm
        fi = torch.tensor(ffn_keep)
        self.fc1 = rows(hf.intermediate.dense, fi)
        self.fc2 = cols(hf.output.dense, fi)
        self.ln2 = hf.output.LayerNorm
        self.head_gate = None
        self.neuron_gate = None
        self.res_gate = None

    def forward(self, x, keep):
        B, T, _ = x.shape
        sh = lambda t: t.view(B, T, self.h, self.d).transpose(1, 2)
        ctx = F.scaled_dot_product_attention(sh(self.q(x)), sh(self.k(x)), sh(self.v(x)), attn_mask=keep)
        if self.head_gate is not None:
            ctx = ctx * self.head_gate.view(1, -1, 1, 1)
        a = self.o(ctx.transpose(1, 2).flatten(2))
        x = self.ln1(x + F.dropout(a, 0.1, self.training))
        if self.res_gate is not None:
            x = x * self.res_gate
        h = F.gelu(self.fc1(x))
        if self.neuron_gate is not None:
            h = h * self.neuron_gate
        x = self.ln2(x + F.dropout(self.fc2(h), 0.1, self.training))
        return x * self.res_gate if self.res_gate is not None else x


class Cut(nn.Module):
    def __init__(self, teacher, student_vocab, tvocab, heads_keep, ffn_keep, max_tokens=64):
        super().__init__()
        emb = teacher.encoder.embeddings
        rows = [tvocab.get(p, tvocab["[UNK]"]) for p in student_vocab]
        src = emb.word_embeddings.weight.detach().float()[rows]  # (V, 384)
        mean = src.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(src - mean, full_matrices=False)
        basis = v[:EMB].T  # (384, EMB)
        self.tok = nn.Embedding(len(rows), EMB)
        self.tok.weight.data = (src - mean) @ basis
        self.up = nn.Linear(EMB, src.shape[1])
        self.up.weight.data = basis.clone(); self.up.bias.data = mean[0].clone()
        self.pos = nn.Embedding(max_tokens, src.shape[1])
        self.pos.weight.data = emb.position_embeddings.weight.detach()[:max_tokens].clone()
        self.type0 = nn.Parameter(emb.token_type_embeddings.weight.detach()[0].clone())
        self.emb_ln = emb.LayerNorm
        hl = teacher.encoder.encoder.layer
        self.layers = nn.ModuleList(Layer(hl[i], heads_keep[j], ffn_keep[j]) for j, i in enumerate(LAYERS))
        self.head = teacher.head
        self.res_gate = None

    def slice_width(self, keep):
        """Keep residual dims ``keep`` everywhere (post-LN: LayerNorms then normalise over them)."""
        k = torch.tensor(keep)
        def sl(lin, rows=None, cols=None):
            w, b = lin.weight.data, lin.bias.data
            if rows is not None:
                w, b = w[rows], b[rows]
            if cols is not None:
                w = w[:, cols]
            new = nn.Linear(w.shape[1], w.shape[0]); new.weight.data = w.clone(); new.bias.data = b.clone()
            return new
        def ln(m):
            new = nn.LayerNorm(len(keep), eps=m.eps); new.weight.data = m.weight.data[k].clone(); new.bias.data = m.bias.data[k].clone()
            return new
        self.up = sl(self.up, rows=k)
        self.pos.weight.data = self.pos.weight.data[:, k].clone()
        self.type0 = nn.Parameter(self.type0.data[k].clone())
        self.emb_ln = ln(self.emb_ln)
        for L in self.layers:
            L.q, L.k, L.v = sl(L.q, cols=k), sl(L.k, cols=k), sl(L.v, cols=k)
            L.o = sl(L.o, rows=k); L.ln1 = ln(L.ln1)
            L.fc1 = sl(L.fc1, cols=k); L.fc2 = sl(L.fc2, rows=k); L.ln2 = ln(L.ln2)
        self.head = sl(self.head, cols=k)

    def features(self, ids, mask):
        B, T = ids.shape
        mask = mask.bool()
        x = self.up(self.tok(ids)) + self.pos(torch.arange(T)) + self.type0
        x = F.dropout(self.emb_ln(x), 0.1, self.training)
        if self.res_gate is not None:
            x = x * self.res_gate
        keep = mask.view(B, 1, 1, T)
        for layer in self.layers:
            layer.res_gate = self.res_gate
            x = layer(x, keep)
        w = mask.unsqueeze(-1).to(x.dtype)
        return (x * w).sum(1) / w.sum(1).clamp(min=1.0)

    def forward(self, ids, mask):
        return self.head(self.features(ids, mask))


cache = default_cache_dir()
data = load_dataset("trec", cache_dir=cache, seed=seed)
teacher, tmeta = load_or_train_teacher(data, TeacherConfig(seed=0), cache_dir=cache)
for p in teacher.parameters():
    p.requires_grad_(False)
dcfg = DistillConfig(seed=seed)
transfer = build_transfer_set(
    data, teacher, distill=dcfg, transfer=TransferConfig(), max_tokens=64, cache_dir=cache,
    dataset="trec", seed=seed, teacher_folder=cache / "teachers" / tmeta["key"], bar=tqdm(disable=True),
)
raw_tok, student_vocab = build_subset_tokenizer(
    (teacher_dir() / "tokenizer.json").read_text(encoding="utf-8"), transfer.own, dcfg.vocab_size
)
tok = StudentTokenizer(raw_tok, 64)
texts = transfer.texts
ids_all, mask_all = tok.encode_batch(texts)
lengths = mask_all.sum(1).tolist()
soft = torch.from_numpy(transfer.soft.astype(np.float32))
feats = torch.from_numpy(transfer.features.astype(np.float32))
hard = torch.tensor(transfer.hard)
tvocab = teacher.tokenizer.get_vocab()
print(f"transfer {len(texts)} texts, vocab {tok.vocab_size}", flush=True)

# 1) the full-width cut (all heads, all neurons) to score importance
full = Cut(teacher, student_vocab, tvocab, [list(range(12))] * len(LAYERS), [list(range(1536))] * len(LAYERS))
for p in full.parameters():
    p.requires_grad_(True)


def acc(model):
    model.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(data.test_texts), 250):
            i, m = tok.encode_batch(data.test_texts[s : s + 250])
            out.append(model(i, m).numpy())
    return evaluate(np.concatenate(out), data.test_labels)


print(f"cut before pruning, no training: {acc(full):.2%}", flush=True)
full.res_gate = torch.ones(384, requires_grad=True)
rs = torch.zeros(384)
for layer in full.layers:
    layer.head_gate = torch.ones(12, requires_grad=True)
    layer.neuron_gate = torch.ones(1536, requires_grad=True)
rng = random.Random(seed)
hs = [torch.zeros(12) for _ in LAYERS]
ns = [torch.zeros(1536) for _ in LAYERS]
full.eval()
for b, batch in enumerate(length_buckets(lengths, 64, rng)[: args.get("score_batches", 60)]):
    ix = torch.tensor(batch)
    w = max(lengths[i] for i in batch)
    logits = full(ids_all[ix, :w], mask_all[ix, :w])
    loss = F.kl_div(F.log_softmax(logits / 2, -1), F.softmax(soft[ix] / 2, -1), reduction="batchmean")
    full.zero_grad()
    full.res_gate.grad = None
    for layer in full.layers:
        layer.head_gate.grad = None; layer.neuron_gate.grad = None
    loss.backward()
    for j, layer in enumerate(full.layers):
        hs[j] += layer.head_gate.grad.abs(); ns[j] += layer.neuron_gate.grad.abs()
    rs += full.res_gate.grad.abs()
heads_keep = [sorted(h.topk(HEADS).indices.tolist()) for h in hs]
ffn_keep = [sorted(n.topk(FFN).indices.tolist()) for n in ns]
print("heads kept", heads_keep, flush=True)
del full
model = Cut(teacher, student_vocab, tvocab, heads_keep, ffn_keep)
width_keep = sorted(rs.topk(WIDTH).indices.tolist())
if WIDTH < 384:
    model.slice_width(width_keep)
    for L in model.layers:
        L.res_gate = None
proj = nn.Linear(WIDTH, 384)
with torch.no_grad():
    proj.weight.zero_(); proj.bias.zero_()
    proj.weight[width_keep, torch.arange(WIDTH)] = 1.0
for p in model.parameters():
    p.requires_grad_(True)
params = sum(p.numel() for p in model.parameters())
tparams = sum(p.numel() for p in teacher.parameters())
print(f"params {params/1e6:.2f} M ({tparams/params:.1f}x under teacher); pruned, untrained: {acc(model):.2%}", flush=True)

steps = math.ceil(len(texts) / 64) * EPOCHS
warm = int(steps * 0.06)
decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "tok" not in n and "pos" not in n]
other = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "tok" not in n and "pos" not in n)] + list(proj.parameters())
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": other, "weight_decay": 0.0}], lr=LR)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm)))
)
t0 = time.time()
for ep in range(EPOCHS):
    model.train()
    for batch in tqdm(length_buckets(lengths, 64, rng), desc=f"epoch {ep}", mininterval=30, file=sys.stdout):
        ix = torch.tensor(batch)
        w = max(lengths[i] for i in batch)
        pooled = model.features(ids_all[ix, :w], mask_all[ix, :w])
        logits = model.head(pooled)
        kd = F.kl_div(F.log_softmax(logits / 2, -1), F.softmax(soft[ix] / 2, -1), reduction="batchmean") * 4
        lab = hard[ix] >= 0
        ce = F.cross_entropy(logits[lab], hard[ix][lab]) if bool(lab.any()) else logits.new_zeros(())
        loss = 0.7 * kd + 0.3 * ce + (1 - F.cosine_similarity(proj(pooled), feats[ix], dim=-1)).mean()
        opt.zero_grad(); loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step()
    print(f"epoch {ep}: test {acc(model):.2%}  ({(time.time()-t0)/60:.1f} min)", flush=True)

# eager fp32 latency, b64 and b1, against the current student's shape (random weights)
from streamproc.model.network import StudentConfig, StudentNetwork
cur = StudentNetwork(StudentConfig(vocab_size=8000, num_labels=6, layer_heads=(2, 3, 1, 2), layer_ffn=(451, 112, 229, 232))).eval()
torch.set_num_threads(1)
i64, m64 = tok.encode_batch(data.test_texts[:64]); i1, m1 = tok.encode_batch(data.test_texts[:1])
def t(mod, i, m, n):
    ts = []
    with torch.inference_mode():
        for _ in range(n):
            s = time.perf_counter(); mod(i, m); ts.append(time.perf_counter() - s)
    return sorted(ts)[n // 2] * 1000
model.eval()
for rnd in range(2):
    a64, b64 = t(model, i64, m64, 30), t(cur, i64, m64, 30)
    a1, b1 = t(model, i1, m1, 100), t(cur, i1, m1, 100)
print(f"eager 1 thread ms: cut b64 {a64:.2f} vs current {b64:.2f} ({a64/b64:.2f}x); b1 {a1:.2f} vs {b1:.2f}", flush=True)
