"""streamproc: Kafka-native streaming NLP inference with lag-adaptive batching."""

from streamproc.errors import StreamprocError
from streamproc.settings import Settings, load_settings

__all__ = ["Settings", "StreamprocError", "load_settings"]
__version__ = "0.1.0"
