"""Changelog recovery in bulk (restore.py): during recovery a fetch's changelog records land in the state
table as Faust's per-record path would leave it, and the recovery's offset moves past them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from faust.types import TP

from streamrisk.runtime.faust.app import build_app
from streamrisk.runtime.faust.restore import apply_in_bulk
from streamrisk.settings import Settings


@dataclass
class Rec:  # the fields of an aiokafka ConsumerRecord that recovery reads
    offset: int
    key: bytes
    value: bytes | None


@pytest.fixture
def recovering(tmp_path):
    """A worker's app whose state table (in memory) recovers changelog partition 1 from offset 10 on."""
    app, _ = build_app(Settings(data_dir=tmp_path, store="memory"))
    table = next(iter(app.tables.values()))
    tp = TP(table.changelog_topic.get_topic_name(), 1)
    recovery = app.tables.recovery
    recovery.in_recovery = True
    recovery.active_tps.add(tp)
    recovery.tp_to_table[tp] = table
    recovery.active_offsets[tp] = 9
    return app, table, tp


def test_records_are_applied_in_order_tombstones_delete_and_the_offset_moves(recovering) -> None:
    app, table, tp = recovering
    table.data[b"gone"] = b"old"
    records = [Rec(10, b"a", b"1"), Rec(11, b"b", b"1"), Rec(12, b"a", b"2"), Rec(13, b"gone", None)]

    assert apply_in_bulk(app, tp, records)

    assert dict(table.data.items()) == {b"a": b"2", b"b": b"1"}
    assert app.tables.recovery.active_offsets[tp] == 13


def test_records_at_or_below_the_recovered_offset_are_not_applied_again(recovering) -> None:
    app, table, tp = recovering
    assert apply_in_bulk(app, tp, [Rec(8, b"a", b"stale"), Rec(9, b"a", b"stale"), Rec(10, b"b", b"new")])
    assert dict(table.data.items()) == {b"b": b"new"}


def test_outside_recovery_or_behind_queued_records_faust_applies_them(recovering) -> None:
    app, table, tp = recovering
    other = TP(tp.topic, 2)
    assert not apply_in_bulk(app, other, [Rec(10, b"a", b"1")])  # not an active partition
    app.tables.changelog_queue.put_nowait(object())
    assert not apply_in_bulk(app, tp, [Rec(10, b"a", b"1")])  # queued records go first
    app.tables.changelog_queue.get_nowait()
    app.tables.recovery.in_recovery = False
    assert not apply_in_bulk(app, tp, [Rec(10, b"a", b"1")])
    assert dict(table.data.items()) == {}
