"""Static group membership (Kafka's `group.instance.id`, KIP-345) for the worker's consumer.

A worker started with `STREAMRISK_GROUP_INSTANCE_ID` joins its group as that instance. When it is killed
and restarted with the same id, the broker hands the restarted process the partitions of the one it
replaces, at once and without a rebalance; a dynamic member would instead wait for the dead member's
session to expire and then stop the whole group for a rebalance.

aiokafka sends no LeaveGroup for a static member, so a graceful stop would leave its partitions idle
until its session expires. A stopping worker is leaving, so `leave_group` sends LeaveGroup v3, which
names the instance and removes it at once.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import errors
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String

log = logging.getLogger(__name__)


class _LeaveGroupResponseV3(Response):
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")),
                          ("error_code", Int16))),
    )


class _LeaveGroupRequestV3(RequestStruct):
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class StaticLeaveGroupRequest(Request[_LeaveGroupRequestV3]):
    """LeaveGroup for one member named by member id and group instance id (v3+, the first to name both)."""

    API_KEY = 13

    def __init__(self, group: str, member_id: str, group_instance_id: str) -> None:
        self._group = group
        self._members = [(member_id, group_instance_id)]

    def build(self, request_struct_class: type[_LeaveGroupRequestV3]) -> _LeaveGroupRequestV3:
        return request_struct_class(self._group, self._members)


def group_instance_id(configured: str, url: str) -> str:
    """The instance id a worker joins as: the configured id and the worker's advertised URL.

    Faust keeps each member's URL in its assignment and a member given an assignment for another URL
    fails every rebalance (an assertion in its assignor). So a worker restarted at another address must
    not take the old one's place: under this id it joins as a new member, as a dynamic one would.
    """
    return f"{configured}@{url}"


def leave_error(response: Any) -> str | None:
    """What went wrong in a LeaveGroup v3 response (the group's error, else the member's), or None."""
    codes = [response.error_code, *(m[2] for m in response.members)]
    failed = next((code for code in codes if code), 0)
    return errors.for_code(failed).__name__ if failed else None


async def leave_group(coordinator: GroupCoordinator) -> None:
    """Leave as the static member this coordinator joined as; one attempt, as aiokafka's own leave."""
    instance = coordinator._group_instance_id
    member_id = coordinator.member_id
    if instance and member_id:  # "" until the first join
        request = StaticLeaveGroupRequest(coordinator.group_id, member_id, instance)
        try:
            response = await coordinator._send_req(request)
        except errors.KafkaError as err:  # the session timeout will end the membership instead
            log.warning("static member %s could not leave group %s: %r", instance, coordinator.group_id, err)
        else:
            failed = leave_error(response)
            if failed:
                log.warning("static member %s could not leave group %s: %s", instance, coordinator.group_id,
                            failed)
            else:
                log.info("static member %s left group %s", instance, coordinator.group_id)
    coordinator.reset_generation()


def leave_on_stop(coordinator: GroupCoordinator) -> None:
    """Make this coordinator leave its group as a static member when its consumer stops.

    aiokafka's `_maybe_leave_group` (called by `GroupCoordinator.close`) skips static members.
    """
    if coordinator._group_instance_id:
        coordinator._maybe_leave_group = lambda: leave_group(coordinator)  # type: ignore[method-assign]
