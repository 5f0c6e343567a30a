"""A model of your own, served by streamproc: ``streamproc worker --model keyword_model:create``.

Run from this directory (the current directory is importable). Anything with ``version``,
``labels``, ``max_tokens`` and ``predict_batch`` serves; here, a rule instead of a network.
"""

from __future__ import annotations

from collections.abc import Sequence

from streamproc import ModelContext, Prediction


class KeywordClassifier:
    version, labels, max_tokens = "keywords-1", ("question", "statement"), 512

    def predict_batch(self, texts: Sequence[str]) -> list[Prediction]:
        out = []
        for text in texts:
            p = 0.9 if text.rstrip().endswith("?") else 0.2  # P(question)
            label = "question" if p >= 0.5 else "statement"
            out.append(Prediction(label, max(p, 1 - p), {"question": p, "statement": 1 - p}))
        return out


def create(context: ModelContext) -> KeywordClassifier:  # context: path, version, threads, settings
    return KeywordClassifier()
