"""One typed settings object for the whole process, read from `STREAMRISK_*` variables and CLI flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

# Contract topic names before the deployment prefix (CONTRACT.md).
INPUT_TOPICS = ("payments", "orders", "repayments", "chargebacks", "advances")
OUTPUT_TOPICS = (
    "risk-decisions",
    "fraud-alerts",
    "credit-limit-adjustments",
    "credit-line-adjustments",
    "advance-decisions",
    "dead-letters",
)
CONTROL_TOPIC = "risk-rules"


class SettingsError(ValueError):
    """A setting has a value we cannot run with; the message names the variable and the fix."""


def _parse_windows(text: str) -> dict[str, int]:
    units = {"s": 1000, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        num, unit = part[:-1], part[-1:]
        if unit not in units or not num.isdigit() or int(num) <= 0:
            raise SettingsError(
                f"STREAMRISK_WINDOWS: {part!r} is not a window like 5m, 1h, 24h or 30d"
            )
        out[part] = int(num) * units[unit]
    if not out:
        raise SettingsError("STREAMRISK_WINDOWS: at least one window is needed")
    return dict(sorted(out.items(), key=lambda kv: kv[1]))


def _days(text: str) -> int:
    """A whole number of days, in milliseconds."""
    return int(text) * DAY_MS


EXACTLY_ONCE = "exactly_once"
AT_LEAST_ONCE = "at_least_once"
PROCESSING_GUARANTEES = ("auto", EXACTLY_ONCE, AT_LEAST_ONCE)

ROCKSDB = "rocksdb"
MEMORY = "memory"
STORES = (ROCKSDB, MEMORY)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a worker, the CLI and the tools need to know; the table in docs/operations.md."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = ""
    partitions: int = 4
    # Replication factor of the topics a worker or tool creates; None (auto): as many copies as the
    # cluster has brokers, at most 3 (runtime/topics.py resolve_replication). min.insync.replicas is
    # half of them, rounded up (3 -> 2).
    replication: int | None = None
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # The URL the other workers reach this one's HTTP API at (requests for keys it owns are forwarded
    # there); derived from the bind address when unset.
    advertised_url: str | None = None
    app_id: str = "streamrisk"
    data_dir: Path = Path("./data")
    # The state table's local store (docs/state.md): "rocksdb" keeps each partition on disk under the
    # data dir, so a restart reads only the changelog written since its last clean checkpoint and state
    # may outgrow memory; "memory" rebuilds it from the whole changelog at every start (tests).
    store: str = ROCKSDB
    # RocksDB's block cache, with its memtables counted in it, shared by all of a worker's partitions.
    rocksdb_memory_mb: int = 256
    # Warm copies of each state partition kept by other workers (Faust's standby tables); RocksDB only.
    standby_replicas: int = 0
    rules_path: Path | None = None
    # Credit limits and lines (credit/): the policy file (the shipped default when None), and a
    # switch for deployments and benchmarks that run without credit.
    credit_policy_path: Path | None = None
    credit_enabled: bool = True
    # A settled user credit account at its initial limit is closed (and swept) after this much event
    # time without a credit event (credit/user.py `closed`; docs/operations.md, "Memory").
    credit_account_idle_ms: int = 365 * DAY_MS
    api_token: str | None = None
    # The secret the workers of one deployment prove requests between them with (web/peer.py); never
    # sent. Without it a worker whose API needs a token does not forward requests.
    peer_token: str | None = None
    currencies: frozenset[str] = frozenset({"CNY"})
    # How far in the future (vs the worker's clock) an event time may be before it is rejected.
    max_future_skew_ms: int = 5 * MINUTE_MS
    # Largest accepted amount in major units; its minor units must fit the window engine (int64).
    max_amount: int = 10**12
    # Largest accepted input record (key + value bytes); a larger one is dead-lettered.
    max_record_bytes: int = 64 * 1024
    # How long a command retries an unreachable broker (with backoff) before it gives up.
    connect_timeout_s: float = 30.0
    windows: Mapping[str, int] = field(
        default_factory=lambda: {
            "5m": 5 * MINUTE_MS,
            "1h": HOUR_MS,
            "24h": DAY_MS,
            "30d": 30 * DAY_MS,
        }
    )
    allowed_lateness_ms: int = HOUR_MS
    # One fraud alert per subject and reason code within this much event time (later repeats of
    # the same incident are counted, not sent).
    alert_dedupe_ms: int = HOUR_MS
    # How long a payment can still be found by a late chargeback that names it.
    payment_index_ms: int = 180 * DAY_MS
    # How long a payment sent again is still recognised by its event_id (no second effect), even after
    # its user's state expired or was swept: the payment index keeps payments this long. None: the
    # payment index's retention, which is also the least it may be (README, "Guarantees").
    dedupe_horizon_ms: int | None = None
    # Users (and, separately, merchants) kept in memory; the least recently used leave first and
    # are rebuilt from the state table when next touched (docs/operations.md, "Memory").
    max_cached_entities: int = 20_000
    # Merchants whose published summaries are kept decoded in memory (the least recently used leave
    # first), the rest read from a local RocksDB copy of the summaries topic under data_dir; 0 keeps
    # every merchant's summary in memory (core/merchant_view.py; docs/operations.md, "Memory").
    merchant_cache_size: int = 0
    # Decisions kept per merchant for GET /merchants/{id} (state/merchant_decisions.py); 0 keeps none.
    merchant_recent_decisions: int = 10
    # How long a starting worker waits to read the rules and merchant summaries before deciding.
    broadcast_ready_timeout_s: float = 30.0
    # Consumer tuning. Faust hard-codes a 1.5 s fetch wait; a risk decision cannot wait that long
    # on a broker that does not wake parked fetches, so we set our own (see app.py). Apache Kafka
    # answers as soon as a record arrives: the wait only bounds an idle worker's polling. Brokers that
    # answer only at the wait (Tansu) need ~10 (broker/_base.py WORKER_ENV).
    fetch_max_wait_ms: int = 100
    # A fetch returns once this much is ready (or the wait is over). 1 returns at the first record:
    # lowest latency, but under load many tiny fetches, each a request and a socket write.
    fetch_min_bytes: int = 1
    # Records that waited in the consumer while a batch was processed (and committed) are joined by one
    # more fetch of what arrived meanwhile, waiting at most this long for it; 0: never (transport.TopUp).
    fetch_top_up_ms: float = 3.0
    # Faust runs the Kafka consumer in a thread of its own; False runs it on the worker's loop, which
    # saves two thread hops per fetch (in_loop.py).
    consumer_thread: bool = False
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 1.0
    # Static group membership (static_member.py): a worker restarted with the same id takes its
    # partitions back at once, without a rebalance. Give each worker its own stable id (e.g. a pod name).
    group_instance_id: str | None = None
    # Most records per batch: on a backlog larger batches coalesce more state writes and pay the
    # per-fetch costs less often (2,000 cost 8-12 % less CPU per payment than 500 in bench_pipeline's
    # backlog); under live traffic batches are small whatever the limit.
    batch_max: int = 2000
    # Each decision carries `explanation` (rules fired with the values read, top score contributions).
    explain_decisions: bool = False
    # Delivery (delivery.py): how often input offsets are committed (a crash re-reads at most about
    # this much input), how long a record may wait for its acknowledgement, and how many times a
    # failed one is sent before the worker stops.
    commit_interval_ms: int = 500
    # "exactly_once": outputs, changelog and input offsets of a batch in one Kafka transaction;
    # "at_least_once": offsets committed once outputs are acknowledged; "auto": exactly-once where
    # the broker has transactions, at-least-once (said at start) where it has not (delivery.py).
    processing_guarantee: str = "auto"
    # A transaction still open this long after it began is aborted by the broker: how long a killed
    # worker's last transaction holds back `read_committed` readers if the worker does not come back.
    transaction_timeout_s: float = 10.0
    delivery_timeout_s: float = 30.0
    delivery_attempts: int = 5
    # At most one summary per merchant per interval (the merchant side's added staleness).
    summary_interval_ms: int = 100
    # Survivors are hidden from the cyclic GC this often, so no collection pauses to scan the whole
    # state (collector.py); everything is collected in one pass once per full interval. 0: off.
    gc_freeze_interval_s: float = 2.0
    gc_full_interval_s: float = 3600.0
    log_level: str = "info"
    # Logger names to run at DEBUG (e.g. "aiokafka.consumer.fetcher"), for diagnosing one component.
    debug_loggers: tuple[str, ...] = ()

    def topic(self, name: str) -> str:
        """The deployed name of a contract topic."""
        return self.topic_prefix + name

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def dedupe_horizon(self) -> int:
        """How long (ms of event time) a payment's event_id is remembered: the setting, else the
        payment index's retention."""
        return self.payment_index_ms if self.dedupe_horizon_ms is None else self.dedupe_horizon_ms

    @property
    def web_is_loopback(self) -> bool:
        if self.web_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.web_host).is_loopback
        except ValueError:
            return False

    @property
    def web_url(self) -> str:
        """This worker's HTTP API as the other workers reach it (`STREAMRISK_WEB_URL`)."""
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        host = self.web_host
        if host in ("0.0.0.0", "::", ""):
            # Bound to every interface: the machine's name is what the others can resolve.
            host = socket.gethostname()
        return f"http://{host}:{self.web_port}"

    def check(self) -> Settings:
        """Raise SettingsError for combinations that cannot work; return self for chaining."""
        if self.partitions < 1:
            raise SettingsError(f"STREAMRISK_PARTITIONS must be >= 1 (got {self.partitions})")
        if self.replication is not None and self.replication < 1:
            raise SettingsError(f"STREAMRISK_REPLICATION must be >= 1 or auto (got {self.replication})")
        if not self.web_is_loopback and not self.api_token:
            raise SettingsError(
                f"STREAMRISK_WEB_HOST={self.web_host} is not loopback: set STREAMRISK_API_TOKEN "
                "so the HTTP API requires a bearer token"
            )
        if self.alert_dedupe_ms < 0:
            raise SettingsError(f"STREAMRISK_ALERT_DEDUPE_MS must be >= 0 (got {self.alert_dedupe_ms})")
        if self.max_cached_entities < 1:
            raise SettingsError(
                f"STREAMRISK_MAX_CACHED_ENTITIES must be >= 1 (got {self.max_cached_entities})"
            )
        if self.merchant_cache_size < 0:
            raise SettingsError(
                f"STREAMRISK_MERCHANT_CACHE_SIZE must be >= 0 (0: every merchant in memory; got "
                f"{self.merchant_cache_size})"
            )
        if self.merchant_recent_decisions < 0:
            raise SettingsError(
                f"STREAMRISK_MERCHANT_RECENT_DECISIONS must be >= 0 (got {self.merchant_recent_decisions})"
            )
        if self.payment_index_ms <= 0:
            raise SettingsError("STREAMRISK_PAYMENT_INDEX_DAYS must be >= 1")
        if self.credit_account_idle_ms <= 0:
            raise SettingsError("STREAMRISK_CREDIT_ACCOUNT_IDLE_DAYS must be >= 1")
        if self.dedupe_horizon_ms is not None and self.dedupe_horizon_ms < self.payment_index_ms:
            raise SettingsError(
                f"STREAMRISK_DEDUPE_HORIZON_DAYS must be at least STREAMRISK_PAYMENT_INDEX_DAYS "
                f"({self.payment_index_ms // DAY_MS}; got {self.dedupe_horizon_ms // DAY_MS})"
            )
        if not 0 < self.max_amount <= 10**15:
            # 10**15 major units is 10**17 minor: an int64 sum of ~90 such amounts still fits.
            raise SettingsError(f"STREAMRISK_MAX_AMOUNT must be in 1..10**15 (got {self.max_amount})")
        if self.max_record_bytes < 1024:
            raise SettingsError(
                f"STREAMRISK_MAX_RECORD_BYTES must be >= 1024 (got {self.max_record_bytes})"
            )
        if not 0 < self.web_port < 65536:
            raise SettingsError(
                f"web port {self.web_port} is out of range: use 1..65535 (--web-port, STREAMRISK_WEB_PORT)"
            )
        for name, value in (
            ("STREAMRISK_COMMIT_INTERVAL_MS", self.commit_interval_ms),
            ("STREAMRISK_SUMMARY_INTERVAL_MS", self.summary_interval_ms),
            ("STREAMRISK_DELIVERY_ATTEMPTS", self.delivery_attempts),
            ("STREAMRISK_BATCH_MAX", self.batch_max),
            ("STREAMRISK_FETCH_MIN_BYTES", self.fetch_min_bytes),
        ):
            if value < 1:
                raise SettingsError(f"{name} must be >= 1 (got {value})")
        if self.gc_freeze_interval_s < 0 or self.gc_full_interval_s <= 0:
            raise SettingsError(
                "STREAMRISK_GC_FREEZE_INTERVAL_S must be >= 0 (0: off) and STREAMRISK_GC_FULL_INTERVAL_S > 0"
            )
        if not 0 <= self.fetch_top_up_ms <= 1000:
            raise SettingsError(f"STREAMRISK_FETCH_TOP_UP_MS must be in 0..1000 (got {self.fetch_top_up_ms})")
        if self.delivery_timeout_s <= 0:
            raise SettingsError(f"STREAMRISK_DELIVERY_TIMEOUT_S must be > 0 (got {self.delivery_timeout_s})")
        if self.processing_guarantee not in PROCESSING_GUARANTEES:
            raise SettingsError(
                f"STREAMRISK_PROCESSING_GUARANTEE={self.processing_guarantee!r}: expected one of "
                f"{', '.join(PROCESSING_GUARANTEES)}"
            )
        if not 1 <= self.transaction_timeout_s <= 900:
            raise SettingsError(
                f"STREAMRISK_TRANSACTION_TIMEOUT_S must be in 1..900 (got {self.transaction_timeout_s})"
            )
        if self.store not in STORES:
            raise SettingsError(f"STREAMRISK_STORE={self.store!r}: expected one of {', '.join(STORES)}")
        if self.rocksdb_memory_mb < 16:
            raise SettingsError(f"STREAMRISK_ROCKSDB_MEMORY_MB must be >= 16 (got {self.rocksdb_memory_mb})")
        if self.standby_replicas < 0:
            raise SettingsError(f"STREAMRISK_STANDBY_REPLICAS must be >= 0 (got {self.standby_replicas})")
        if self.standby_replicas and self.store != ROCKSDB:
            raise SettingsError(
                "STREAMRISK_STANDBY_REPLICAS needs STREAMRISK_STORE=rocksdb: the memory store keeps no "
                "offset, so a standby's copy would be read again from the start at a failover anyway"
            )
        if self.session_timeout_s * 1000 < 3 * self.heartbeat_interval_s * 1000:
            raise SettingsError("session timeout must be at least 3 heartbeat intervals")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read `STREAMRISK_*` variables; keyword overrides (from CLI flags) win when not None."""
        env = os.environ if env is None else env
        kw: dict[str, object] = {}

        def text(var: str, attr: str) -> None:
            if env.get(var):
                kw[attr] = env[var]

        def switch(var: str, attr: str) -> None:
            raw = env.get(var, "").strip().lower()
            if raw:
                if raw not in ("1", "true", "yes", "0", "false", "no"):
                    raise SettingsError(f"{var} must be 1/true/yes or 0/false/no (got {raw!r})")
                kw[attr] = raw in ("1", "true", "yes")

        def number(var: str, attr: str, kind: Callable[[str], object] = int) -> None:
            raw = env.get(var)
            if raw:
                try:
                    kw[attr] = kind(raw)
                except ValueError:
                    what = {int: "an integer", float: "a number", _days: "a whole number of days"}[kind]
                    raise SettingsError(f"{var} must be {what} (got {raw!r})") from None

        text("STREAMRISK_BOOTSTRAP", "bootstrap")
        if "STREAMRISK_TOPIC_PREFIX" in env:
            kw["topic_prefix"] = env["STREAMRISK_TOPIC_PREFIX"]
        number("STREAMRISK_PARTITIONS", "partitions")
        if env.get("STREAMRISK_REPLICATION", "").strip().lower() != "auto":
            number("STREAMRISK_REPLICATION", "replication")
        text("STREAMRISK_WEB_HOST", "web_host")
        number("STREAMRISK_WEB_PORT", "web_port")
        text("STREAMRISK_WEB_URL", "advertised_url")
        text("STREAMRISK_APP_ID", "app_id")
        if env.get("STREAMRISK_DATA_DIR"):
            kw["data_dir"] = Path(env["STREAMRISK_DATA_DIR"])
        text("STREAMRISK_STORE", "store")
        number("STREAMRISK_ROCKSDB_MEMORY_MB", "rocksdb_memory_mb")
        number("STREAMRISK_STANDBY_REPLICAS", "standby_replicas")
        if env.get("STREAMRISK_RULES"):
            kw["rules_path"] = Path(env["STREAMRISK_RULES"])
        if env.get("STREAMRISK_CREDIT_POLICY"):
            kw["credit_policy_path"] = Path(env["STREAMRISK_CREDIT_POLICY"])
        credit = env.get("STREAMRISK_CREDIT", "").strip().lower()
        if credit:
            if credit not in ("on", "off"):
                raise SettingsError(f"STREAMRISK_CREDIT must be on or off (got {env['STREAMRISK_CREDIT']!r})")
            kw["credit_enabled"] = credit == "on"
        text("STREAMRISK_API_TOKEN", "api_token")
        text("STREAMRISK_PEER_TOKEN", "peer_token")
        if env.get("STREAMRISK_CURRENCIES"):
            kw["currencies"] = frozenset(
                c.strip().upper() for c in env["STREAMRISK_CURRENCIES"].split(",") if c.strip()
            )
        number("STREAMRISK_MAX_FUTURE_SKEW_MS", "max_future_skew_ms")
        number("STREAMRISK_MAX_AMOUNT", "max_amount")
        number("STREAMRISK_MAX_RECORD_BYTES", "max_record_bytes")
        number("STREAMRISK_CONNECT_TIMEOUT_S", "connect_timeout_s", float)
        if env.get("STREAMRISK_WINDOWS"):
            kw["windows"] = _parse_windows(env["STREAMRISK_WINDOWS"])
        number("STREAMRISK_ALLOWED_LATENESS_MS", "allowed_lateness_ms")
        number("STREAMRISK_ALERT_DEDUPE_MS", "alert_dedupe_ms")
        number("STREAMRISK_PAYMENT_INDEX_DAYS", "payment_index_ms", _days)
        number("STREAMRISK_CREDIT_ACCOUNT_IDLE_DAYS", "credit_account_idle_ms", _days)
        number("STREAMRISK_DEDUPE_HORIZON_DAYS", "dedupe_horizon_ms", _days)
        number("STREAMRISK_MAX_CACHED_ENTITIES", "max_cached_entities")
        number("STREAMRISK_MERCHANT_CACHE_SIZE", "merchant_cache_size")
        number("STREAMRISK_MERCHANT_RECENT_DECISIONS", "merchant_recent_decisions")
        number("STREAMRISK_FETCH_MAX_WAIT_MS", "fetch_max_wait_ms")
        number("STREAMRISK_FETCH_MIN_BYTES", "fetch_min_bytes")
        number("STREAMRISK_FETCH_TOP_UP_MS", "fetch_top_up_ms", float)
        switch("STREAMRISK_CONSUMER_THREAD", "consumer_thread")
        number("STREAMRISK_SESSION_TIMEOUT_S", "session_timeout_s", float)
        number("STREAMRISK_HEARTBEAT_INTERVAL_S", "heartbeat_interval_s", float)
        text("STREAMRISK_GROUP_INSTANCE_ID", "group_instance_id")
        number("STREAMRISK_BATCH_MAX", "batch_max")
        switch("STREAMRISK_EXPLAIN", "explain_decisions")
        number("STREAMRISK_COMMIT_INTERVAL_MS", "commit_interval_ms")
        text("STREAMRISK_PROCESSING_GUARANTEE", "processing_guarantee")
        number("STREAMRISK_TRANSACTION_TIMEOUT_S", "transaction_timeout_s", float)
        number("STREAMRISK_DELIVERY_TIMEOUT_S", "delivery_timeout_s", float)
        number("STREAMRISK_DELIVERY_ATTEMPTS", "delivery_attempts")
        number("STREAMRISK_SUMMARY_INTERVAL_MS", "summary_interval_ms")
        number("STREAMRISK_GC_FREEZE_INTERVAL_S", "gc_freeze_interval_s", float)
        number("STREAMRISK_GC_FULL_INTERVAL_S", "gc_full_interval_s", float)
        text("STREAMRISK_LOG_LEVEL", "log_level")
        if env.get("STREAMRISK_DEBUG_LOGGERS"):
            names = env["STREAMRISK_DEBUG_LOGGERS"].split(",")
            kw["debug_loggers"] = tuple(n.strip() for n in names if n.strip())
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)  # type: ignore[arg-type]
