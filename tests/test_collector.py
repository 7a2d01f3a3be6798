"""collector.py: survivors are hidden from the cyclic GC, and a cycle among them is still freed by the
periodic full collection."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from streamrisk.runtime.collector import Collector
from streamrisk.settings import Settings, SettingsError


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic GC frees it


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_a_tick_hides_survivors_and_a_full_interval_frees_a_frozen_cycle() -> None:
    collector = Collector(full_interval_s=3600)
    node = Node()
    alive = weakref.ref(node)
    collector.tick()
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert alive() is not None  # frozen: no collection looks at it
    collector.full_interval_s = 0.0  # the full interval has passed
    collector.tick()
    assert alive() is None
    assert collector.full_collections == 1
    assert collector.stats()["gc_full_collections"] == 1


def test_young_cycles_are_still_collected_between_ticks_and_start_stop_restores_thresholds() -> None:
    before = gc.get_threshold()
    collector = Collector()
    collector.start()
    assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] > before[2]
    collector.tick()
    node = Node()
    alive = weakref.ref(node)
    del node
    gc.collect(1)
    assert alive() is None
    collector.stop()
    assert gc.get_threshold() == before


def test_gc_settings_are_read_and_checked() -> None:
    env = {"STREAMRISK_GC_FREEZE_INTERVAL_S": "0", "STREAMRISK_GC_FULL_INTERVAL_S": "60"}
    settings = Settings.from_env(env)
    assert (settings.gc_freeze_interval_s, settings.gc_full_interval_s) == (0.0, 60.0)
    with pytest.raises(SettingsError, match="GC_FREEZE"):
        Settings.from_env({"STREAMRISK_GC_FREEZE_INTERVAL_S": "-1"}).check()


def test_building_an_app_leaves_the_process_gc_thresholds_alone(tmp_path) -> None:
    from streamrisk.runtime.faust.app import build_app

    before = gc.get_threshold()
    build_app(Settings(data_dir=tmp_path))
    assert gc.get_threshold() == before  # changed only while a worker runs
