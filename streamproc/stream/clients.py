"""Where the worker's aiokafka clients get ``STREAMPROC_AIOKAFKA_*_EXTRA_CONFIG``.

Faust (faust-streaming 0.15.3, pinned) creates both aiokafka clients itself:

* **Producer.** Every ``AIOKafkaProducer`` it makes (the default one, one per exactly_once
  transaction, the threaded one) is built from ``Producer._settings_extra()`` over its defaults:
  a supported override point. Faust's own extras (exactly_once: ``acks=all``, idempotence) stay
  on top of the user's.
* **Consumer.** ``AIOKafkaConsumerThread._create_worker_consumer`` calls
  ``aiokafka.AIOKafkaConsumer(...)`` with its keywords and has no hook. Rather than copy that
  method (and drift from Faust's), we run Faust's own code with its module's ``aiokafka`` name
  seen as a namespace whose ``AIOKafkaConsumer`` adds the extras; nothing global is changed. If
  a Faust upgrade stopped building the consumer that way, the worker fails at start rather than
  run without the extras.

Which keys are accepted is :mod:`streamproc.client_config`'s call (checked with the settings).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from typing import Any

import aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Producer

__all__ = ["ExtraConfigConsumerThread", "ExtraConfigProducer"]


class ExtraConfigProducer(Producer):
    """Faust's aiokafka producer, built with ``extra_config`` over Faust's defaults."""

    extra_config: Mapping[str, Any] = types.MappingProxyType({})

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**self.extra_config, **super()._settings_extra()}


class ExtraConfigConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread, whose worker consumer gets the owning consumer's
    ``extra_config`` (read at start, so it can be set after the consumer is made)."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        extras: Mapping[str, Any] = getattr(self.consumer, "extra_config", None) or {}
        if not extras:
            return super()._create_worker_consumer(transport)
        made = []

        def consumer_with_extras(*args: Any, **kwargs: Any) -> aiokafka.AIOKafkaConsumer:
            made.append(kwargs)
            return aiokafka.AIOKafkaConsumer(*args, **{**kwargs, **extras})

        create = _with_consumer_class(
            AIOKafkaConsumerThread._create_worker_consumer, consumer_with_extras
        )
        consumer = create(self, transport)
        if not made:
            raise RuntimeError(
                "Faust no longer creates its consumer with aiokafka.AIOKafkaConsumer: "
                "STREAMPROC_AIOKAFKA_CONSUMER_EXTRA_CONFIG cannot be applied"
            )
        return consumer


class _AiokafkaWith(types.ModuleType):
    """The aiokafka module, except for ``AIOKafkaConsumer``."""

    def __init__(self, consumer: Callable[..., Any]) -> None:
        super().__init__("aiokafka")
        self.AIOKafkaConsumer = consumer

    def __getattr__(self, name: str) -> Any:
        return getattr(aiokafka, name)


def _with_consumer_class(
    method: Callable[..., Any], consumer: Callable[..., Any]
) -> Callable[..., Any]:
    """``method`` (a plain function of Faust's module) run with ``aiokafka.AIOKafkaConsumer``
    resolved to ``consumer``: a copy of the function over a copy of its globals."""
    function = getattr(method, "__func__", method)
    return types.FunctionType(
        function.__code__,
        {**function.__globals__, "aiokafka": _AiokafkaWith(consumer)},
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )
