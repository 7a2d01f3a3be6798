"""Static group membership (static_member.py): the id a worker joins as, and the LeaveGroup it sends."""

from __future__ import annotations

from io import BytesIO
from types import SimpleNamespace

from streamrisk.runtime.faust.static_member import StaticLeaveGroupRequest, group_instance_id, leave_error
from streamrisk.settings import Settings


def test_the_instance_id_carries_the_url_so_a_worker_moved_elsewhere_joins_as_a_new_member() -> None:
    assert group_instance_id("pod-0", "http://10.0.0.5:6066") == "pod-0@http://10.0.0.5:6066"
    assert group_instance_id("pod-0", "http://10.0.0.5:6066") != group_instance_id("pod-0", "http://10.0.0.6:6066")


def test_the_setting_is_read_from_the_environment() -> None:
    assert Settings.from_env({}).group_instance_id is None
    assert Settings.from_env({"STREAMRISK_GROUP_INSTANCE_ID": "pod-0"}).group_instance_id == "pod-0"


def test_leave_group_v3_names_the_member_and_its_instance() -> None:
    struct = StaticLeaveGroupRequest("app", "pod-0-1234", "pod-0").prepare({13: (0, 4)})
    assert struct.API_VERSION == 3
    wire = BytesIO(struct.encode())
    assert type(struct).SCHEMA.decode(wire) == ("app", [("pod-0-1234", "pod-0")])


def test_a_failed_leave_names_the_error_of_the_group_or_of_the_member() -> None:
    ok = SimpleNamespace(error_code=0, members=[("m", "i", 0)])
    assert leave_error(ok) is None
    assert leave_error(SimpleNamespace(error_code=0, members=[("m", "i", 25)])) == "UnknownMemberIdError"
    assert leave_error(SimpleNamespace(error_code=16, members=[])) == "NotCoordinatorForGroupError"
