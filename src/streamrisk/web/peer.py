"""Requests between the workers of one deployment, proved with the peer secret (STREAMRISK_PEER_TOKEN).

A worker forwards a request for a key it does not own to the URL the key's owner advertised to the
consumer group (owner.py), and `/cluster` asks every member's `/stats` the same way. Whoever can join
the group (a stray worker, or a second deployment that shares the group by mistake) chooses that URL.
So a request between workers carries no secret at all: neither the user's bearer token (it would go
wherever a member says) nor the peer token itself (the same leak one step removed). It carries a
proof instead, an HMAC-SHA256 under the peer token of the target URL, the request's path and query, a
time and a fresh nonce. A receiver with the same peer token serves it like a request with the API
token; the proof is useless elsewhere (bound to that URL and path) and goes stale after PROOF_TTL_S.
The answer comes back with an HMAC of the nonce, its status and its body, so a member without the
token cannot pass off answers of its own as those of the deployment's workers.

We chose a shared secret over an allow-list of peer URLs: workers come and go (scaling, restarts on
new addresses), and a list would have to be kept in step with every deployment change, while the
secret is set once, like the API token. With the API token set but no peer token a worker refuses to
forward (routes.py answers 502 naming STREAMRISK_PEER_TOKEN) rather than send a user's token on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

import orjson

# A forwarded request's proof: "<unix seconds>.<nonce>.<hex HMAC>"; its answer's: "<hex HMAC>".
PEER_HEADER = "X-StreamRisk-Peer"
PEER_REPLY_HEADER = "X-StreamRisk-Peer-Reply"
# How old (or how far ahead, for clocks apart) a proof may be: covers a forward's 5 s timeout.
PROOF_TTL_S = 30


def _canonical(target_url: str, path: str, query: Mapping[str, str]) -> bytes:
    # Decoded path and sorted query: both ends see the same, however the client re-quotes the URL.
    return orjson.dumps([target_url.rstrip("/"), path, sorted(query.items())])


class PeerAuth:
    """Signs the requests this worker sends to its peers and checks those it receives from them."""

    def __init__(self, token: str | None) -> None:
        self._key = token.encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def _mac(self, *parts: bytes) -> str:
        assert self._key is not None
        return hmac.new(self._key, b"\n".join(parts), hashlib.sha256).hexdigest()

    def sign_request(
        self, target_url: str, path: str, query: Mapping[str, str], now: float | None = None
    ) -> tuple[dict[str, str], str]:
        """The header proving a request to `target_url` comes from a peer, and the nonce its answer
        must be signed with."""
        nonce = secrets.token_hex(16)
        ts = str(int(time.time() if now is None else now))
        mac = self._mac(b"request", ts.encode(), nonce.encode(), _canonical(target_url, path, query))
        return {PEER_HEADER: f"{ts}.{nonce}.{mac}"}, nonce

    def verify_request(
        self, own_url: str, path: str, query: Mapping[str, str], proof: str | None, now: float | None = None
    ) -> str | None:
        """The nonce of a valid proof that a peer sent this request to `own_url`; None otherwise."""
        if self._key is None or not proof:
            return None
        ts, _, rest = proof.partition(".")
        nonce, _, mac = rest.partition(".")
        if not ts.isdigit() or not nonce or len(nonce) > 64:
            return None
        if abs((time.time() if now is None else now) - int(ts)) > PROOF_TTL_S:
            return None
        expected = self._mac(b"request", ts.encode(), nonce.encode(), _canonical(own_url, path, query))
        return nonce if hmac.compare_digest(mac.encode("utf-8", "replace"), expected.encode()) else None

    def sign_reply(self, nonce: str, status: int, body: bytes) -> dict[str, str]:
        return {PEER_REPLY_HEADER: self._mac(b"reply", nonce.encode(), str(status).encode(), body)}

    def verify_reply(self, nonce: str, status: int, body: bytes, proof: str | None) -> bool:
        """Whether an answer to our request with `nonce` was signed by a worker with our peer token."""
        if self._key is None or not proof:
            return False
        expected = self._mac(b"reply", nonce.encode(), str(status).encode(), body)
        return hmac.compare_digest(proof.encode("utf-8", "replace"), expected.encode())
