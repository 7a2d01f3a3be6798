"""The names of the deployment's internal topics and consumer group: pure functions of the settings,
shared by the core (which produces to them) and the runtime (which creates and reads them)."""

from __future__ import annotations

from ..settings import Settings

STATE_TABLE = "state"


def consumer_group(settings: Settings) -> str:
    """The deployment's name on the broker, `{prefix}{app id}`: the Faust app id, so the workers'
    consumer group, and the start of every internal topic's name.

    It carries the topic prefix: two deployments on one cluster with different prefixes but the same
    (default) app id must not join one group (each would be assigned the other's partitions and
    forward its requests there) nor share a changelog (each would restore the other's state).
    """
    return settings.topic(settings.app_id)


def changelog_topic(settings: Settings) -> str:
    """Faust names a table's changelog `{app id}-{table}-changelog`; our app id is consumer_group's."""
    return f"{consumer_group(settings)}-{STATE_TABLE}-changelog"


def merchant_events_topic(settings: Settings) -> str:
    """The internal repartition topic: payments and chargebacks keyed by merchant."""
    return f"{consumer_group(settings)}-merchant-events"


def merchant_risk_topic(settings: Settings) -> str:
    """Compacted: the newest risk summary of each merchant, read whole by every worker."""
    return f"{consumer_group(settings)}-merchant-risk"


def shadow_decisions_topic(settings: Settings) -> str:
    """Would-be decisions of the shadow ruleset (rules/shadow.py), read by `streamrisk shadow-report`."""
    return f"{consumer_group(settings)}-shadow-decisions"


def reviews_topic(settings: Settings) -> str:
    """Analysts' resolutions of review cases, keyed by user (core/reviews.py): applied by the user's owner."""
    return f"{consumer_group(settings)}-reviews"
