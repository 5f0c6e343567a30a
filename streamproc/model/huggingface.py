"""A user's own Hugging Face text classifier, served as a :class:`TextClassifier`.

``STREAMPROC_MODEL=hf:/path/to/dir`` (or ``hf`` with versions under ``STREAMPROC_MODEL_DIR``)
serves a directory written by ``model.save_pretrained(dir)`` and ``tokenizer.save_pretrained(dir)``
with ``AutoModelForSequenceClassification`` and ``AutoTokenizer``:

- **local only**: ``local_files_only=True`` and no remote code, so nothing is downloaded or
  executed from the hub at run time; a path that is not a directory with ``config.json`` is
  refused before transformers sees it (it would read it as a hub repository id);
- **labels** from ``config.id2label`` in id order; **version** from the directory name (or the
  version ``CURRENT`` names);
- **window**: the tokenizer's ``model_max_length``, capped by ``max_position_embeddings``; longer
  texts keep their head, as for the built-in model, and are first cut to 32 characters per window
  token so a huge text costs no more to tokenize than a short one;
- **multi-label** when ``config.problem_type == "multi_label_classification"``: sigmoid per label,
  and every label at or above 0.5 in the output's ``labels``; otherwise softmax;
- batched (length-sorted chunks of 64), eval mode, ``torch.inference_mode()``, with
  ``STREAMPROC_MODEL_THREADS`` intra-op threads (process-wide in torch).

transformers and torch are imported only here, from the ``compress`` extra.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamproc.errors import ArtifactError, ModelError
from streamproc.model.base import MULTI_LABEL_THRESHOLD, ClassifierIdentity, Prediction
from streamproc.model.tokenizer import CHARS_PER_TOKEN_BOUND

__all__ = ["HuggingFaceClassifier"]

#: Largest single forward pass; bigger batches run as length-sorted chunks (less padding).
FORWARD_CHUNK = 64
#: transformers' ``model_max_length`` when a tokenizer does not know its window.
_UNKNOWN_LENGTH = 1_000_000


class HuggingFaceClassifier(ClassifierIdentity):
    """``AutoModelForSequenceClassification`` + ``AutoTokenizer`` from a local directory."""

    runtime = "transformers"

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        labels: Sequence[str],
        version: str,
        max_tokens: int,
        multi_label: bool,
    ) -> None:
        super().__init__(version=version, labels=labels, max_tokens=max_tokens)
        self._model = model.eval()
        self._tokenizer = tokenizer
        self.multi_label = multi_label

    @classmethod
    def from_dir(
        cls, path: Path, *, version: str | None = None, threads: int | None = None
    ) -> HuggingFaceClassifier:
        """Load ``path``; :class:`ArtifactError` (one line) for anything that cannot serve."""
        path = Path(path)
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            raise ArtifactError(
                f"hf:{path}: serving a Hugging Face model needs {' and '.join(missing)}, not "
                "installed here: pip install 'streamproc[compress]'"
            )
        if not (path / "config.json").is_file():
            raise ArtifactError(
                f"hf:{path}: not a Hugging Face model directory (no config.json; write one with "
                "model.save_pretrained(dir) and tokenizer.save_pretrained(dir))"
            )
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars are noise in a worker's log
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                path, local_files_only=True, trust_remote_code=False
            )
            model = AutoModelForSequenceClassification.from_pretrained(
                path, local_files_only=True, trust_remote_code=False
            )
        except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ArtifactError(
                f"hf:{path}: transformers cannot load a text classifier from it "
                f"({type(exc).__name__}: {first_line})"
            ) from None
        config = model.config
        id2label = {int(k): str(v) for k, v in (config.id2label or {}).items()}
        if sorted(id2label) != list(range(config.num_labels)):
            raise ArtifactError(
                f"hf:{path}: config.id2label {id2label} does not name outputs "
                f"0..{config.num_labels - 1}"
            )
        return cls(
            model,
            tokenizer,
            labels=[id2label[i] for i in range(config.num_labels)],
            version=version or path.resolve().name,
            max_tokens=_window(tokenizer, config, path),
            multi_label=config.problem_type == "multi_label_classification",
        )

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(B, L) float64: softmax rows, or independent sigmoids for a multi-label model."""
        out = np.empty((len(texts), len(self._labels)), dtype=np.float64)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # chars ≈ tokens
        for start in range(0, len(order), FORWARD_CHUNK):
            chunk = order[start : start + FORWARD_CHUNK]
            out[chunk] = self._forward([texts[i] for i in chunk])
        return out

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        limit = CHARS_PER_TOKEN_BOUND * self._max_tokens
        batch = self._tokenizer(
            [t[:limit] for t in texts],
            padding=True,
            truncation=True,
            max_length=self._max_tokens,
            return_tensors="pt",
        )  # input_ids, attention_mask (and token_type_ids for BERT): (B, T) each
        with torch.inference_mode():
            logits = self._model(**batch).logits.double()  # (B, L)
            probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs.numpy()

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        if not texts:
            return []
        try:
            probs = self.probabilities(texts)  # (B, L)
        except (RuntimeError, ValueError, IndexError) as exc:  # torch / tokenizer failures
            raise ModelError(
                f"model {self._version} failed on a batch of {len(texts)}: {exc}"
            ) from exc
        labels, out = self._labels, []
        for row in probs.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            over = (
                tuple(n for n, p in zip(labels, row, strict=True) if p >= MULTI_LABEL_THRESHOLD)
                if self.multi_label
                else None
            )
            out.append(
                Prediction(labels[best], row[best], dict(zip(labels, row, strict=True)), over)
            )
        return out


def _window(tokenizer: Any, config: Any, path: Path) -> int:
    """The tokens a text may have: the tokenizer's limit, capped by the position table."""
    known = [
        int(n)
        for n in (
            getattr(tokenizer, "model_max_length", None),
            getattr(config, "max_position_embeddings", None),
        )
        if isinstance(n, int | float) and 0 < n < _UNKNOWN_LENGTH
    ]
    if not known:
        raise ArtifactError(
            f"hf:{path}: unknown window (set model_max_length in the tokenizer, or "
            "max_position_embeddings in config.json)"
        )
    return min(known)
