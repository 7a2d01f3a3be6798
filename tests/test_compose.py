"""docker-compose.yml and Dockerfile: validated with `docker-compose config` (no engine needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
TOKEN = "compose-test-token"
PEER_TOKEN = "compose-test-peer-token"


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        message = "docker-compose not found: install the Debian package `docker-compose`"
        if os.environ.get("CI"):
            pytest.fail(message + " (apt-get install -y docker-compose)")
        pytest.skip(message)
    return exe


def _compose(*args: str, token: str | None = TOKEN, peer_token: str | None = PEER_TOKEN
             ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STREAMRISK_API_TOKEN", "STREAMRISK_PEER_TOKEN")}
    if token is not None:
        env["STREAMRISK_API_TOKEN"] = token
    if peer_token is not None:
        env["STREAMRISK_PEER_TOKEN"] = peer_token
    return subprocess.run(
        [_docker_compose(), "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=45,
    )


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    quiet = _compose("config", "-q")
    assert quiet.returncode == 0, quiet.stderr
    full = _compose("config")
    assert full.returncode == 0, full.stderr
    return yaml.safe_load(full.stdout)


def _workers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in config["services"].items() if "worker" in (svc.get("command") or [])}


def test_kafka_is_a_single_kraft_node_with_healthcheck(config: dict[str, Any]) -> None:
    kafka = config["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert str(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == "1"
    assert kafka["healthcheck"]["test"]
    assert any("29092" in json.dumps(port) for port in kafka["ports"]), "host listener published"


def test_two_workers_configured_by_env(config: dict[str, Any]) -> None:
    workers = _workers(config)
    assert len(workers) == 2, sorted(config["services"])
    web_ports, volumes, instances = set(), set(), set()
    for name, svc in workers.items():
        env = svc["environment"]
        assert env["STREAMRISK_BOOTSTRAP"] == "kafka:9092", name
        assert env["STREAMRISK_WEB_HOST"] == "0.0.0.0", name
        assert env["STREAMRISK_API_TOKEN"] == TOKEN, name
        assert env["STREAMRISK_PEER_TOKEN"] == PEER_TOKEN, name
        assert env["STREAMRISK_DATA_DIR"] == "/data", name
        port = str(env["STREAMRISK_WEB_PORT"])
        web_ports.add(port)
        instances.add(env["STREAMRISK_GROUP_INSTANCE_ID"])  # static members on Apache Kafka
        assert any(f":{port}:{port}" in str(p) or f"{port}:{port}" in str(p) for p in svc["ports"]), (
            f"{name} must publish its web port {port}: {svc['ports']}"
        )
        data_mounts = [v for v in svc["volumes"] if str(v).split(":")[1] == "/data"]
        assert len(data_mounts) == 1, svc["volumes"]
        volumes.add(str(data_mounts[0]).split(":")[0])
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert Path(svc["build"]["context"]) == ROOT
    assert len(web_ports) == 2, "each worker needs its own web port"
    assert len(volumes) == 2, "workers must not share a state volume"
    assert len(instances) == 2, "each static group member needs its own instance id"


def test_missing_api_token_is_refused() -> None:
    result = _compose("config", "-q", token=None)
    assert result.returncode != 0
    assert "STREAMRISK_API_TOKEN" in result.stderr


def test_dockerfile_runs_streamrisk_worker_as_non_root() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["streamrisk"]' in lines
    assert lines[-1] == 'CMD ["worker"]'
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored


def test_missing_peer_token_is_refused() -> None:
    result = _compose("config", "-q", peer_token=None)
    assert result.returncode != 0
    assert "STREAMRISK_PEER_TOKEN" in result.stderr
