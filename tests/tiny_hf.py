"""A tiny Hugging Face text classifier the tests build and train themselves (no download).

A one-layer BERT (hidden size 32) over a hand-built WordPiece vocabulary, trained for a few
seconds on templated sentences so its labels mean something: ``pos`` / ``neg`` / ``neu`` (single
label), or independent ``question`` / ``urgent`` tags (multi-label). Written with
``save_pretrained`` like any user's fine-tuned model.
"""

from __future__ import annotations

from pathlib import Path

SUBJECTS = ["the film", "this phone", "our hotel", "the service", "that book", "the update"]
MOODS = {
    "pos": ["is wonderful", "made my day", "is great", "works well"],
    "neg": ["is awful", "is broken", "was a waste", "left me sad"],
    "neu": ["arrived today", "is blue", "has a box", "exists"],
}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def corpus() -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for label, moods in MOODS.items():
        for subject in SUBJECTS:
            for mood in moods:
                texts.append(f"{subject} {mood}")
                labels.append(label)
    return texts, labels


def tagged_corpus() -> tuple[list[str], list[list[str]]]:
    """Multi-label: a leading ``why`` tags ``question``, a trailing ``now`` tags ``urgent``."""
    texts, tags = [], []
    for subject in SUBJECTS:
        for moods in MOODS.values():
            for mood in moods:
                for why in (False, True):
                    for now in (False, True):
                        text = ("why " if why else "") + f"{subject} {mood}"
                        texts.append(text + (" now" if now else ""))
                        tags.append(["question"] * why + ["urgent"] * now)
    return texts, tags


def build_tiny_hf_classifier(path: Path, *, multi_label: bool = False, steps: int = 60) -> Path:
    """Train and ``save_pretrained`` a tiny classifier into ``path``; returns ``path``."""
    import torch
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(0)
    texts, targets = tagged_corpus() if multi_label else corpus()
    words = sorted({w for t in texts for w in t.split()})
    pieces = SPECIAL + words + [chr(c) for c in range(33, 127)]
    wordpiece = Tokenizer(WordPiece({p: i for i, p in enumerate(pieces)}, unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=wordpiece,
        model_max_length=24,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    names = ["question", "urgent"] if multi_label else list(MOODS)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=24,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    model = BertForSequenceClassification(config)
    if multi_label:
        y = torch.tensor([[float(n in tags) for n in names] for tags in targets])
    else:
        y = torch.tensor([names.index(label) for label in targets])
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(**batch, labels=y).loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
