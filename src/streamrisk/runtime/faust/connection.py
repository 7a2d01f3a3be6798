"""aiokafka's broker connection, safe on uvloop when the broker goes away.

aiokafka writes a request and turns an `OSError` into `KafkaConnectionError`, which every caller
retries. On asyncio's own loop a write to a closed transport does not raise; on uvloop (the worker's
loop, worker.py) it raises `RuntimeError("unable to perform operation on <TCPTransport closed=True>")`,
which nobody expects: in a chaos run with the broker SIGKILLed it ended a consumer's group coordination
for good ("Unexpected error during coordination"), and the worker went on fetching for a group it had
left, aborting every transaction. A request on a closed transport is refused here as the connection
error it is, before anything is written.
"""

from __future__ import annotations

from typing import Any

from aiokafka import errors
from aiokafka.conn import AIOKafkaConnection, CloseReason

_aiokafka_send = AIOKafkaConnection.send


def _send_on_open_transport(self: Any, request: Any, expect_response: bool = True) -> Any:
    writer = self._writer
    if writer is not None and writer.transport.is_closing():
        self.close(reason=CloseReason.CONNECTION_BROKEN)
        raise errors.KafkaConnectionError(f"Connection at {self._host}:{self._port} closed")
    return _aiokafka_send(self, request, expect_response)


def install_closed_transport_guard() -> None:
    """Refuse requests on a closed transport with a retriable error (pinned in test_runtime_pins)."""
    AIOKafkaConnection.send = _send_on_open_transport  # type: ignore[method-assign]
