"""streamproc: Kafka-native streaming NLP inference with lag-adaptive batching.

Bring your own model: implement :class:`TextClassifier` (returning :class:`Prediction`), write a
factory taking a :class:`ModelContext`, and run ``STREAMPROC_MODEL=package.module:factory
streamproc worker`` (see :mod:`streamproc.model.loading`).
"""

from streamproc.errors import StreamprocError
from streamproc.model.base import Prediction, TextClassifier
from streamproc.model.loading import ModelContext
from streamproc.settings import Settings, load_settings

__all__ = [
    "ModelContext",
    "Prediction",
    "Settings",
    "StreamprocError",
    "TextClassifier",
    "load_settings",
]
__version__ = "0.1.0"
