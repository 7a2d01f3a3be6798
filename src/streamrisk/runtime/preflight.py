"""Checks a command makes before it starts, so that what a user can get wrong ends in one clear line.

Each failure is a `UserError` whose message names the thing (address, port, file) and the fix; the CLI
prints it as one line and exits non-zero (with `--log-level debug` it also prints the traceback).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Iterator

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.25
MAX_BACKOFF_S = 4.0


class UserError(Exception):
    """Something the user can fix (configuration, a file, the environment); the message says how."""


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """aiokafka logs an ERROR per failed connection attempt; we report the outcome once instead."""
    lg = logging.getLogger(logger_name)
    if lg.isEnabledFor(logging.DEBUG):
        yield
        return
    previous = lg.level
    lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        lg.setLevel(previous)


async def _probe(bootstrap: str, timeout_s: float) -> str | None:
    """None when a broker answers a metadata request at `bootstrap`, else why not."""
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap.split(","), request_timeout_ms=max(1000, int(timeout_s * 1000))
    )
    try:
        await client.bootstrap()
        return None
    except (KafkaError, OSError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.close()


async def wait_for_broker(bootstrap: str, timeout_s: float) -> None:
    """Return once a broker answers at `bootstrap`; retry with backoff, for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    backoff = FIRST_BACKOFF_S
    attempts = 0
    with _quiet("aiokafka"):
        while True:
            attempts += 1
            left = deadline - time.monotonic()
            why = await _probe(bootstrap, min(max(left, 1.0), 10.0))
            if why is None:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise UserError(
                    f"no Kafka broker answered at {bootstrap} ({attempts} attempts in {timeout_s:g} s, "
                    "STREAMRISK_CONNECT_TIMEOUT_S). Start one with `streamrisk broker` (it prints its "
                    "address), or point --bootstrap / STREAMRISK_BOOTSTRAP at a running cluster"
                )
            log.info("no broker at %s yet (%s); retrying in %.2f s", bootstrap, why, backoff)
            await asyncio.sleep(min(backoff, left))
            backoff = min(backoff * 2, MAX_BACKOFF_S)


def check_port(host: str, port: int, what: str, fix: str) -> None:
    """Raise UserError when `port` is out of range or cannot be bound on `host`."""
    if not 0 < port < 65536:
        raise UserError(f"{what} port {port} is out of range: use 1..65535 ({fix})")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UserError(f"{what} host {host!r} does not resolve ({exc.strerror}; {fix})") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        # The same option as the server that binds it later, so a port in TIME_WAIT is not "in use".
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise UserError(f"{what} port {port} on {host} {reason}: pick another ({fix})") from exc
