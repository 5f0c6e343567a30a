"""The student's tokenizer: the teacher's BERT WordPiece rules over a trimmed vocabulary.

:func:`build_subset_tokenizer` keeps the teacher's normalizer (lowercase, accent handling) and
pre-tokenizer but only the ``vocab_size`` word pieces most used on the training texts, plus every
ASCII character piece so any word still splits into known pieces. Keeping the teacher's pieces
lets the student's embeddings start from the teacher's (see ``compress/distill.py``) while the
table shrinks from 30,522 rows to a few thousand.

**Truncation rule**: every encoding starts with ``[CLS]``; a text longer than the window keeps its
*head* — the first ``max_tokens`` tokens (``[CLS]`` included) — and the rest is dropped, never
rejected. An empty text encodes to ``[CLS]`` alone. Texts longer than
``CHARS_PER_TOKEN_BOUND × max_tokens`` characters are first cut to that many characters, so a
256 KiB text costs no more to encode than a short one; the head's tokens are the same for any
text whose first ``max_tokens`` tokens lie within that prefix (English averages ~5 characters a
token, far below the bound).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer

if TYPE_CHECKING:
    import torch

__all__ = ["SPECIAL_TOKENS", "StudentTokenizer", "build_subset_tokenizer", "train_wordpiece"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in the student vocab
CHARS_PER_TOKEN_BOUND = 32  # characters kept per window token before tokenizing (see above)


class StudentTokenizer:
    """A fast ``tokenizers`` WordPiece tokenizer with batched encoding to padded tensors."""

    def __init__(self, tokenizer: Tokenizer, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._tok = tokenizer
        pad_id = tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            raise ValueError("the tokenizer has no [PAD] token")
        self.pad_id = int(pad_id)
        self._tok.enable_truncation(max_length=max_tokens, direction="right")  # keep the head
        self._tok.enable_padding(pad_id=self.pad_id, pad_token="[PAD]")  # to the longest in batch
        self._max_chars = CHARS_PER_TOKEN_BOUND * max_tokens

    @classmethod
    def from_file(cls, path: Path, max_tokens: int) -> StudentTokenizer:
        return cls(Tokenizer.from_file(str(path)), max_tokens)

    @classmethod
    def from_str(cls, text: str, max_tokens: int) -> StudentTokenizer:
        return cls(Tokenizer.from_str(text), max_tokens)

    def save(self, path: Path) -> None:
        """Write the tokenizer JSON (without the runtime padding/truncation settings)."""
        data = json.loads(self._tok.to_str())
        data["truncation"] = None
        data["padding"] = None
        path.write_text(json.dumps(data, ensure_ascii=False))

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def vocab(self) -> dict[str, int]:
        return dict(self._tok.get_vocab())

    def tokens(self, text: str) -> list[str]:
        return list(self._tok.encode(text).tokens)

    def encode_arrays(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode the batch in one call: ids (B, T) int64, mask (B, T) bool; T = longest ≤ max.

        NumPy, so a worker serving through ONNX Runtime never imports torch. ``tokenizers``
        releases the GIL while it encodes.
        """
        if not texts:
            return np.zeros((0, 1), dtype=np.int64), np.zeros((0, 1), dtype=np.bool_)
        limit = self._max_chars
        encodings = self._tok.encode_batch([t[:limit] if len(t) > limit else t for t in texts])
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)  # (B, T)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.bool_)  # (B, T)
        return ids, mask

    def encode_batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode_arrays` as torch tensors: ids (B, T) int64, mask (B, T) bool."""
        import torch

        ids, mask = self.encode_arrays(texts)
        return torch.from_numpy(ids), torch.from_numpy(mask)


def build_subset_tokenizer(
    teacher_tokenizer_json: str, texts: Sequence[str], vocab_size: int
) -> tuple[Tokenizer, list[str]]:
    """A WordPiece tokenizer over the ``vocab_size`` pieces the teacher's vocabulary uses most on
    ``texts``, plus every printable-ASCII piece and the special tokens.

    Returns the tokenizer (``[CLS] $A`` post-processing, no padding/truncation set) and its
    vocabulary in id order, so callers can map each student id back to the teacher's piece.
    """
    teacher = Tokenizer.from_str(teacher_tokenizer_json)
    teacher.no_padding()
    teacher.no_truncation()
    teacher_vocab = teacher.get_vocab()
    counts: Counter[str] = Counter()
    for start in range(0, len(texts), 2048):
        for encoding in teacher.encode_batch(
            list(texts[start : start + 2048]), add_special_tokens=False
        ):
            counts.update(encoding.tokens)
    ascii_pieces = [chr(c) for c in range(33, 127)]
    base = [p for p in ascii_pieces + ["##" + p for p in ascii_pieces] if p in teacher_vocab]
    vocab: list[str] = list(SPECIAL_TOKENS)
    seen = set(vocab)
    for piece in base:
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)
    for piece, _count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab) >= vocab_size:
            break
        if piece not in seen:
            vocab.append(piece)
            seen.add(piece)

    data = json.loads(teacher_tokenizer_json)
    data["model"]["vocab"] = {piece: i for i, piece in enumerate(vocab)}
    data["added_tokens"] = [
        {
            "id": i,
            "content": tok,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i, tok in enumerate(SPECIAL_TOKENS)
    ]
    cls_id = vocab.index("[CLS]")
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
        ],
        "pair": [
            {"SpecialToken": {"id": "[CLS]", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [cls_id], "tokens": ["[CLS]"]}},
    }
    data["truncation"] = None
    data["padding"] = None
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False)), vocab


def train_wordpiece(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """A BERT-style (lowercasing) WordPiece tokenizer trained on ``texts`` — the fallback when the
    teacher's vocabulary is not installed. Same special tokens (ids 0..4), ``[CLS] $A`` template."""
    from tokenizers import models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS))
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    cls_id = tokenizer.token_to_id("[CLS]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", pair="[CLS] $A $B", special_tokens=[("[CLS]", cls_id)]
    )
    return tokenizer
