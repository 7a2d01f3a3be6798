"""The recording format: what `record` writes, `replay` and `backtest` read back byte for byte."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamrisk.recording.jsonl import Recorded, RecordingError, parse_line, read_recording, write_records
from streamrisk.recording.record import merge_by_time


def roundtrip(rec: Recorded) -> Recorded:
    return parse_line(rec.to_line(), "test:1")


def test_a_json_record_is_written_as_the_contract_line_and_read_back_with_its_times() -> None:
    value = b'{"event_id":"p1","ts":1700000000000,"amount":12.5}'
    rec = Recorded("payments", "u1", value, timestamp=1700000000123, partition=2, offset=41)
    line = orjson.loads(rec.to_line())
    assert line == {"topic": "payments", "key": "u1", "value": orjson.loads(value),
                    "timestamp": 1700000000123, "partition": 2, "offset": 41}
    back = roundtrip(rec)
    assert back == rec  # the value's bytes too: orjson writes the same compact form
    assert back.event_ts() == 1700000000000


def test_a_malformed_value_is_kept_as_text_or_base64_so_a_backtest_dead_letters_it_too() -> None:
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe binary"):
        rec = Recorded("payments", "u1", raw, timestamp=5)
        assert roundtrip(rec).value == raw
        assert roundtrip(rec).event_ts() is None  # no event time: pacing and clocks skip it
    assert roundtrip(Recorded("risk-rules", "main", None)).value is None  # a tombstone


def test_a_pretty_printed_value_still_takes_one_line() -> None:
    rec = Recorded("payments", "u1", b'{\n  "ts": 1\n}')
    assert rec.to_line().count(b"\n") == 1
    assert orjson.loads(roundtrip(rec).value) == {"ts": 1}


def test_a_hand_written_contract_line_without_times_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"topic": "orders", "key": "m1", "value": {"ts": 7}}\n\n')
    assert list(read_recording(path)) == [Recorded("orders", "m1", b'{"ts":7}')]


@pytest.mark.parametrize(("line", "problem"), [
    (b"nope", "not JSON"),
    (b'{"key": "u1", "value": {}}', '"topic"'),
    (b'{"topic": "payments", "key": "u1"}', 'no "value"'),
    (b'{"topic": "payments", "key": "u1", "value": {}, "timestamp": "x"}', "timestamp must be an integer"),
])
def test_a_bad_line_is_refused_naming_the_file_line_and_problem(line: bytes, problem: str,
                                                                tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"topic": "orders", "key": "m1", "value": {}}\n' + line + b"\n")
    with pytest.raises(RecordingError, match=f"r.jsonl:2: .*{problem}"):
        list(read_recording(path))


def test_a_missing_recording_is_named(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"cannot read recording .*nothing\.jsonl"):
        list(read_recording(tmp_path / "nothing.jsonl"))


def test_partitions_merge_by_record_time_keeping_each_partitions_order(tmp_path: Path) -> None:
    p0 = [Recorded("payments", "a", b"{}", t, 0, i) for i, t in enumerate((10, 30, 20))]  # producer clock
    p1 = [Recorded("payments", "b", b"{}", t, 1, i) for i, t in enumerate((15, 25))]
    merged = merge_by_time([p0, p1])
    assert [(r.partition, r.offset) for r in merged] == [(0, 0), (1, 0), (1, 1), (0, 1), (0, 2)]
    path = tmp_path / "m.jsonl"
    with path.open("wb") as fh:
        write_records(fh, merged)
    assert list(read_recording(path)) == merged


async def test_a_snapshot_merges_whole_partitions_by_record_time(tmp_path: Path) -> None:
    """Fetches return a small partition whole and a big one in pieces; the snapshot still comes out
    in record-time order (a chargeback after the payment it names)."""
    from aiokafka import TopicPartition

    from streamrisk.recording.record import _write_merged

    pay, cb = TopicPartition("payments", 0), TopicPartition("chargebacks", 0)
    payments = [Recorded("payments", "u", b"{}", t, 0, t) for t in range(0, 100, 10)]
    fetches = [{pay: payments[:3], cb: [Recorded("chargebacks", "u", b"{}", 55, 0, 0)]},
               {pay: payments[3:]}]

    async def batches():
        for f in fetches:
            yield f

    out = tmp_path / "snap.jsonl"
    stats = await _write_merged(batches(), out)
    recs = list(read_recording(out))
    assert [r.timestamp for r in recs] == [0, 10, 20, 30, 40, 50, 55, 60, 70, 80, 90]
    assert stats.total == 11 and stats.per_topic == {"payments": 10, "chargebacks": 1}
