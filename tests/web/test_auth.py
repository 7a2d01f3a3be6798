"""Bearer-token checks: open paths, a missing header, a wrong token, the right one; refusing a public bind."""

from __future__ import annotations

import pytest

from streamrisk.cli import main
from streamrisk.web.auth import BearerAuth


def test_without_a_token_every_request_is_served() -> None:
    auth = BearerAuth(None)
    assert not auth.enabled
    assert auth.allows("/users/u1", None)


def test_with_a_token_only_the_right_bearer_header_is_served() -> None:
    auth = BearerAuth("s3cret")
    assert auth.allows("/users/u1", "Bearer s3cret")
    assert not auth.allows("/users/u1", None)
    assert not auth.allows("/users/u1", "Bearer wrong")
    assert not auth.allows("/users/u1", "s3cret")
    assert not auth.allows("/metrics", "Bearer s3cret ")
    assert not auth.allows("/stats", "Bearer s3crét")  # non-ASCII is compared, not a crash


def test_health_and_the_dashboard_shell_are_open() -> None:
    auth = BearerAuth("s3cret")
    assert auth.allows("/health", None) and auth.allows("/", None)


def test_denial_says_which_mistake_and_carries_the_challenge() -> None:
    auth = BearerAuth("s3cret")
    body, headers = auth.denial(None)
    assert "missing" in body["error"] and headers["WWW-Authenticate"].startswith("Bearer")
    body, _ = auth.denial("Bearer nope")
    assert body["error"] == "wrong bearer token"


def test_worker_refuses_a_public_bind_without_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("STREAMRISK_API_TOKEN", raising=False)
    assert main(["worker", "--web-host", "0.0.0.0", "--bootstrap", "127.0.0.1:1"]) != 0
    assert "STREAMRISK_API_TOKEN" in capsys.readouterr().err
