"""``streamproc bench``: end-to-end latency and throughput of batching policies, real broker.

One run, one broker, one model, one machine for every contender::

    load generator ──▶ input topic ──▶ worker process (contender) ──▶ output topic ──▶ collector
    (bench thread)                     streamproc.tools.bench.worker                 (bench thread)

Contenders: per-event with the fp32 teacher; per-event, take(64, 50 ms), take(256, 200 ms) and
adaptive batching with the compressed student; and a pass-through worker (no model) as the floor
of Kafka + Faust + pipeline. Every contender × load point gets fresh topics, a fresh consumer
group, a fresh Faust app and a fresh batching policy, is warmed up with a few events, then
measured for a bounded time. Load profiles: a sweep of constant rates (a contender's sweep stops
at its first saturated rate: delivered < 0.9 × offered, undelivered events, or p99 above
``EXPLODED_P99_MS``) and a burst (a backlog of events arriving at once on top of steady load).

Floors, measured in the same run: the broker alone (produce → consume, one hop, no worker), the
pass-through worker (two hops through Faust), and model time alone (``predict_batch`` at batch 1
and at the sizes the batched contenders used).

Reports: ``bench.json`` (everything, with the command line), ``bench.md`` (tables, targets,
distance from floors), PNG plots, and ``README-snippet.md`` (headline table + plot + command).

The package, one module per concern:

- :mod:`.contenders`: what competes (batching policy, model, runtime, ingress/egress path);
- :mod:`.measure`: one contender at one load point in a worker process, and the model-alone floors;
- :mod:`.load`: the load generator and the collector of predictions (confluent-kafka threads);
- :mod:`.worker`: the child process that serves a contender (``python -m``), and
  :class:`~.worker.BenchWorker`, the parent's handle on it (both ends of one protocol);
- :mod:`.results` (and :mod:`.points`): what a run measured, typed, and its ``bench.json`` form;
- :mod:`.targets`: the verdicts; :mod:`.report` and :mod:`.plots`: what is written;
- :mod:`.command`: the whole run and the ``streamproc bench`` command.
"""
