"""Every topic a worker reads or writes, created before the worker joins its consumer group.

A consumer group subscribes to topics by name, and a topic that does not exist when the group forms
gets no partitions until a later metadata refresh and rebalance; its records would wait minutes. So a
worker creates what is missing first, then starts consuming.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from ..core.topic_names import (
    STATE_TABLE,
    changelog_topic,
    consumer_group,
    merchant_events_topic,
    merchant_risk_topic,
    reviews_topic,
    shadow_decisions_topic,
)
from ..settings import CONTROL_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS, Settings
from .preflight import UserError

log = logging.getLogger(__name__)

#: Copies of each topic when the cluster has enough brokers: one broker may be lost, and a second
#: failure still loses no acknowledged record.
MAX_AUTO_REPLICATION = 3


def min_insync_for(replication: int) -> int:
    """min.insync.replicas for topics of `replication` copies: half of them, rounded up (3 -> 2, 2 -> 1), so
    a write acknowledged with acks=all survives a broker loss (3 copies), and one broker down still takes
    writes."""
    return (replication + 1) // 2


async def cluster_size(settings: Settings) -> int:
    """How many brokers the cluster at settings.bootstrap lists (registered and live)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap.split(","))
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        return max(1, len(cluster["brokers"]))
    finally:
        await admin.close()


async def resolve_replication(settings: Settings) -> Settings:
    """Settle STREAMRISK_REPLICATION=auto (None): as many copies as the cluster has brokers, at most
    MAX_AUTO_REPLICATION. A set value is kept (the broker refuses more copies than it has brokers)."""
    if settings.replication is not None:
        return settings
    brokers = await cluster_size(settings)
    replication = min(MAX_AUTO_REPLICATION, brokers)
    log.info("the cluster has %d broker(s): topics get %d replica(s), min.insync.replicas %d",
             brokers, replication, min_insync_for(replication))
    return replace(settings, replication=replication)


def topic_config(settings: Settings, config: dict[str, str]) -> dict[str, str]:
    """A topic's config as created: `config`, plus min.insync.replicas when it has several replicas
    (one replica: the broker's default, 1, which every broker takes)."""
    assert settings.replication is not None, "resolve_replication first"
    if settings.replication == 1:
        return config
    return {**config, "min.insync.replicas": str(min_insync_for(settings.replication))}


def worker_topics(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name -> (partitions, topic config), for everything a worker touches."""
    n = settings.partitions
    compact = {"cleanup.policy": "compact"}
    topics: dict[str, tuple[int, dict[str, str]]] = {
        settings.topic(t): (n, {}) for t in (*INPUT_TOPICS, *OUTPUT_TOPICS)
    }
    topics[merchant_events_topic(settings)] = (n, {})
    topics[reviews_topic(settings)] = (n, {})  # analysts' resolutions, keyed by user like payments
    topics[shadow_decisions_topic(settings)] = (n, {})
    # The newest value per key is all that matters here.
    topics[changelog_topic(settings)] = (n, compact)
    topics[merchant_risk_topic(settings)] = (n, compact)
    # One partition: every worker must apply rulesets in the same order, and the newest one wins.
    topics[settings.topic(CONTROL_TOPIC)] = (1, compact)
    return topics


def keyed_topics(settings: Settings) -> dict[str, int]:
    """Topics whose partition count the worker relies on -> the count it needs.

    State is partitioned by message key: an entity's events on the input topics, the merchant events
    forwarded to it and its changelog records must all sit on the same partition number, so all these
    topics need `settings.partitions`. Rulesets are applied in one order: `risk-rules` needs one.
    """
    n = settings.partitions
    out = {settings.topic(t): n for t in INPUT_TOPICS}
    out[merchant_events_topic(settings)] = n
    out[reviews_topic(settings)] = n
    out[changelog_topic(settings)] = n
    out[settings.topic(CONTROL_TOPIC)] = 1
    return out


def layout_problems(settings: Settings, partitions: dict[str, int]) -> list[str]:
    """What is wrong with the existing topics' partition counts (`partitions`: topic -> count)."""
    problems = []
    for topic, needed in keyed_topics(settings).items():
        have = partitions.get(topic)
        if have is not None and have != needed:
            fix = (
                "it must have exactly 1" if needed == 1 else
                f"state is partitioned by key, so every input, internal and changelog topic needs "
                f"{needed} (STREAMRISK_PARTITIONS); set STREAMRISK_PARTITIONS to the count the "
                "existing topics share, or recreate the topic"
            )
            problems.append(f"topic {topic!r} has {have} partitions, this worker needs {needed}: {fix}")
    return problems


async def record_limit(settings: Settings, topic: str, default: int) -> int:
    """The topic's max.message.bytes (the largest record batch the broker takes), or `default`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap.split(","))
    await admin.start()
    try:
        [resp] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        for *_, configs in resp.resources:
            for name, value, *_ in configs:
                if name == "max.message.bytes" and value:
                    return int(value)
    except Exception as exc:  # a broker without DescribeConfigs: Kafka's default then
        log.warning("could not read max.message.bytes of %s (%r); assuming %d", topic, exc, default)
    finally:
        await admin.close()
    return default


def _warn_of_unprefixed_state(settings: Settings, existing: set[str]) -> None:
    """Before the group and changelog carried the prefix, a prefixed deployment's were named by the app
    id alone: say so when such a changelog exists and this deployment's does not (yet)."""
    old = f"{settings.app_id}-{STATE_TABLE}-changelog"
    if settings.topic_prefix and old in existing and changelog_topic(settings) not in existing:
        log.warning(
            "topic %r exists but %r does not: the consumer group and the changelog now carry "
            "STREAMRISK_TOPIC_PREFIX (group %r). A deployment that ran with this prefix before starts "
            "a new group and rebuilds its state from the input topics (docs/operations.md)",
            old, changelog_topic(settings), consumer_group(settings),
        )


class TopicLayoutError(UserError):
    """Existing topics are partitioned otherwise than the worker needs; it must not start."""


class TopicCreationError(UserError):
    """The cluster refused to create a topic (too many replicas for its brokers, a bad config)."""


#: CreateTopics error codes that are no failure: none, and TOPIC_ALREADY_EXISTS (another worker was first).
_CREATED_OR_EXISTS = frozenset({0, 36})


def creation_errors(response: Any) -> list[str]:
    """Each topic a CreateTopics response refused, as "NAME: ERROR (broker's message)"; the per-topic
    errors come in the response, not as an exception."""
    refused = []
    for entry in getattr(response, "topic_errors", ()):
        topic, code, *rest = entry
        if code in _CREATED_OR_EXISTS:
            continue
        message = rest[0] if rest and isinstance(rest[0], str) and rest[0] else ""
        refused.append(f"{topic}: {for_code(code).__name__}" + (f" ({message})" if message else ""))
    return refused


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    return {
        t["topic"]: len(t["partitions"])
        for t in await admin.describe_topics(topics)
        if t.get("error_code", 0) == 0
    }


def contract_topics(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """The contract's topics only (no app-id internal ones), as `worker_topics` sets them up."""
    names = {settings.topic(t) for t in (*INPUT_TOPICS, *OUTPUT_TOPICS, CONTROL_TOPIC)}
    return {t: spec for t, spec in worker_topics(settings).items() if t in names}


async def ensure_topics(
    settings: Settings, timeout_s: float = 60.0, *, contract_only: bool = False
) -> list[str]:
    """Create the missing topics and wait until the broker lists them all; returns those created.

    `contract_only`: for tools that produce before any worker ran (publish-rules, produce, replay):
    a topic the broker auto-created on their first send would get the broker's partition count, and
    `risk-rules` neither one partition nor compaction.
    """
    settings = await resolve_replication(settings)
    wanted = contract_topics(settings) if contract_only else worker_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap.split(","))
    deadline = time.monotonic() + timeout_s
    created: list[str] = []
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        if not contract_only:
            _warn_of_unprefixed_state(settings, existing)
        while True:
            missing = [t for t in wanted if t not in existing]
            if not missing:
                # Only now: a metadata request for a missing topic could auto-create it.
                counts = await _partition_counts(admin, list(keyed_topics(settings)))
                problems = layout_problems(settings, counts)
                if problems:
                    raise TopicLayoutError("; ".join(problems))
                return created
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics still missing after {timeout_s:.0f} s: {', '.join(missing)}")
            new = [
                NewTopic(t, wanted[t][0], settings.replication,
                         topic_configs=topic_config(settings, wanted[t][1]))
                for t in missing
            ]
            try:
                response = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker won the race
            else:
                refused = creation_errors(response)
                if refused:
                    raise TopicCreationError(
                        f"the cluster refused to create {'; '.join(refused)} (replication "
                        f"{settings.replication}: STREAMRISK_REPLICATION, or auto for as many copies as "
                        "the cluster lists brokers)"
                    )
                created += missing
                log.info("created topics: %s", ", ".join(missing))
            await asyncio.sleep(0.1)
            existing = set(await admin.list_topics())
    finally:
        await admin.close()
