"""docker-compose.yml and Dockerfile: validated with `docker-compose config` (no engine needed). The same
topology (3 brokers, 3 workers) runs from `streamrisk` commands in tests/integration/test_cluster.py."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
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


def _brokers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in config["services"].items() if svc["image"].startswith("apache/kafka:")}


def test_kafka_is_a_three_node_kraft_cluster_replicating_every_topic(config: dict[str, Any]) -> None:
    brokers = _brokers(config)
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"], sorted(config["services"])
    voters = {f"{n}@kafka-{n}:9093" for n in (1, 2, 3)}
    node_ids, host_ports, volumes, cluster_ids = set(), set(), set(), set()
    for name, kafka in brokers.items():
        assert kafka["image"].startswith("apache/kafka:4.")
        env = {k: str(v) for k, v in kafka["environment"].items()}
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"], name
        node_ids.add(env["KAFKA_NODE_ID"])
        cluster_ids.add(env["CLUSTER_ID"])
        # Three copies of every topic (the broker's own too), two in sync for an acks=all write.
        for var in ("KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
                    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"):
            assert env[var] == "3", (name, var)
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2", name
        assert kafka["healthcheck"]["test"], name
        published = [p for p in kafka["ports"] if "29" in json.dumps(p)]
        assert len(published) == 1, f"{name}: one host listener published"
        host_ports.add(json.dumps(published[0]))
        assert f"localhost:{_published_port(published[0])}" in env["KAFKA_ADVERTISED_LISTENERS"], name
        [volume] = [str(v).split(":")[0] for v in kafka["volumes"]]
        volumes.add(volume)
    assert node_ids == {"1", "2", "3"}
    assert len(cluster_ids) == 1 and len(cluster_ids.pop()) == 22, "one cluster id, a base64 UUID"
    assert len(host_ports) == 3 and len(volumes) == 3, "each broker its own host port and data volume"


def _published_port(port: object) -> str:
    """The host port of a `ports` entry, in either of docker-compose's forms."""
    if isinstance(port, dict):
        return str(port["published"])
    return str(port).split(":")[-2]


def test_three_workers_configured_by_env_and_checked_on_ready(config: dict[str, Any]) -> None:
    workers = _workers(config)
    assert len(workers) == 3, sorted(config["services"])
    web_ports, volumes, instances = set(), set(), set()
    for name, svc in workers.items():
        env = svc["environment"]
        assert sorted(env["STREAMRISK_BOOTSTRAP"].split(",")) == [f"kafka-{n}:9092" for n in (1, 2, 3)], name
        assert env["STREAMRISK_REPLICATION"] == "auto", name  # 3 copies on this cluster (runtime/topics.py)
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
        assert {k: v["condition"] for k, v in svc["depends_on"].items()} == {
            f"kafka-{n}": "service_healthy" for n in (1, 2, 3)}
        assert Path(svc["build"]["context"]) == ROOT
        health = " ".join(svc["healthcheck"]["test"])
        assert "/ready" in health and "STREAMRISK_API_TOKEN" in health, health  # /ready needs the token
    assert len(web_ports) == 3, "each worker needs its own web port"
    assert len(volumes) == 3, "workers must not share a state volume"
    assert len(instances) == 3, "each static group member needs its own instance id"


def test_the_workers_health_check_runs_against_a_ready_endpoint(config: dict[str, Any]) -> None:
    """The health check's command, run here against a stand-in /ready: 0 on 200 with the token, else not."""
    [worker, *_] = _workers(config).values()
    command = worker["healthcheck"]["test"]
    assert command[:2] == ["CMD", "python"]
    seen: list[str | None] = []

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            ok = self.path == "/ready" and self.headers.get("Authorization") == f"Bearer {TOKEN}"
            self.send_response(200 if ok else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "STREAMRISK_WEB_PORT": str(server.server_address[1])}
        ready = subprocess.run([sys.executable, *command[2:]], env={**env, "STREAMRISK_API_TOKEN": TOKEN},
                               capture_output=True, timeout=30)
        refused = subprocess.run([sys.executable, *command[2:]], env={**env, "STREAMRISK_API_TOKEN": "wrong"},
                                 capture_output=True, timeout=30)
    finally:
        server.shutdown()
    assert ready.returncode == 0, ready.stderr
    assert refused.returncode != 0
    assert seen == [f"Bearer {TOKEN}", "Bearer wrong"]


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
