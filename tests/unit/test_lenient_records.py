"""aiokafka's record reader, made to deliver records whose header key is not UTF-8."""

from __future__ import annotations

from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

from streamproc.errors import EventError
from streamproc.events import dead_letter_headers
from streamproc.stream import lenient_records


def _batch(base: int, headers: list[list[tuple[str, bytes]]]) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=0, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1_000_000,
    )  # fmt: skip
    for delta, record_headers in enumerate(headers):
        builder.append(delta, timestamp=1, key=b"k", value=f"v{base + delta}".encode(),
                       headers=record_headers)  # fmt: skip
    raw = bytearray(builder.build())
    raw[0:8] = base.to_bytes(8, "big")  # base offset
    return bytes(raw)


def test_every_record_of_a_fetch_arrives_and_a_bad_key_keeps_its_bytes() -> None:
    lenient_records.install()
    from aiokafka.consumer import fetcher

    first = _batch(0, [[], []])
    # Same length as the key it replaces; 0xff 0xfe is not UTF-8 (CRC checks are off below).
    second = _batch(2, [[], [("XXkey", b"v")], [("ok", b"w")]]).replace(b"XXkey", b"\xff\xfekey")
    records = fetcher.PartitionRecords(
        TopicPartition("t", 0), fetcher.MemoryRecords(first + second), [], 0, None, None,
        False, 0,
    )  # fmt: skip
    got = [(r.offset, r.value, r.headers) for r in records]
    assert [offset for offset, _, _ in got] == [0, 1, 2, 3, 4], "each record exactly once"
    assert got[3][2] == (("\udcff\udcfekey", b"v"),)
    assert got[4][2] == (("ok", b"w"),)
    assert lenient_records.invalid_header_key(got[3][2]) == "\\xff\\xfekey"
    assert lenient_records.invalid_header_key(got[4][2]) is None
    assert lenient_records.invalid_header_key([("naïve", b"")]) is None  # valid UTF-8
    # The dead letter keeps the header, its key escaped (aiokafka can only send UTF-8 keys).
    headers = dead_letter_headers(
        EventError("invalid_header"), topic="t", partition=0, offset=3, original=got[3][2]
    )
    assert headers[0] == ("\\xff\\xfekey", b"v")
