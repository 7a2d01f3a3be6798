"""A whole deployment in one process, without Kafka: a Processor on a dict table, with the internal
topics (forwarded merchant events, merchant summaries, risk-rules) fed back as the worker would."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message, Out
from streamrisk.loadgen.patterns import Record
from streamrisk.rules import Ruleset
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV


class Pipeline:
    def __init__(self, settings: Settings | None = None, kv: DictKV | None = None,
                 ruleset: Ruleset | None = None) -> None:
        self.settings = settings or Settings()
        self.kv = kv or DictKV()
        self.proc = Processor(self.settings, self.kv, ruleset)
        self.offset = 0
        self.outputs: list[Out] = []

    def message(self, topic: str, key: str | bytes, value: dict | bytes | None) -> Message:
        self.offset += 1
        raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
        k = key if isinstance(key, bytes) else key.encode()
        return Message(self.settings.topic(topic), 0, self.offset, k, raw)

    def run(self, records: Iterable[Record], now: int, batch: int = 50) -> list[Out]:
        """Send records in batches of `batch`; return the contract outputs they caused."""
        msgs = [self.message(t, k, v) for t, k, v in records]
        start = len(self.outputs)
        for i in range(0, len(msgs), batch):
            self.outputs += self.proc.run_local(msgs[i:i + batch], now)
        return self.outputs[start:]

    def publish_rules(self, name: str, value: Any, report: bool = True) -> list[Out]:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        outs = self.proc.on_broadcast(self.message("risk-rules", name, raw), report=report)
        self.outputs += outs
        return outs

    def records(self, topic: str, outs: list[Out] | None = None) -> list[dict[str, Any]]:
        name = self.settings.topic(topic)
        return [o.value for o in (self.outputs if outs is None else outs) if o.topic == name]
