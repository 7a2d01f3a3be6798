"""Peer proofs (web/peer.py): a request between workers carries no secret, only a proof bound to its
target, path and time; an answer is taken only when signed with the same peer token."""

from __future__ import annotations

from streamrisk.web.peer import PEER_HEADER, PEER_REPLY_HEADER, PROOF_TTL_S, PeerAuth

OWNER = "http://10.0.0.2:6066"
NOW = 1_800_000_000.0


def test_a_proof_carries_neither_token_and_a_peer_with_the_same_token_accepts_it() -> None:
    sender, owner = PeerAuth("peer-s3cret"), PeerAuth("peer-s3cret")
    headers, nonce = sender.sign_request(OWNER, "/payments/p1", {"user_id": "u1"}, now=NOW)
    assert set(headers) == {PEER_HEADER}
    assert "peer-s3cret" not in headers[PEER_HEADER] and "Bearer" not in headers[PEER_HEADER]
    assert owner.verify_request(OWNER + "/", "/payments/p1", {"user_id": "u1"}, headers[PEER_HEADER],
                                now=NOW + 1) == nonce
    reply = owner.sign_reply(nonce, 200, b'{"ok": 1}')
    assert set(reply) == {PEER_REPLY_HEADER}
    assert sender.verify_reply(nonce, 200, b'{"ok": 1}', reply[PEER_REPLY_HEADER])


def test_a_proof_is_refused_for_another_token_url_path_query_or_time() -> None:
    sender = PeerAuth("peer-s3cret")
    proof = sender.sign_request(OWNER, "/users/u1", {}, now=NOW)[0][PEER_HEADER]
    good = PeerAuth("peer-s3cret")
    assert good.verify_request(OWNER, "/users/u1", {}, proof, now=NOW) is not None
    assert PeerAuth("other-secret").verify_request(OWNER, "/users/u1", {}, proof, now=NOW) is None
    assert PeerAuth(None).verify_request(OWNER, "/users/u1", {}, proof, now=NOW) is None
    assert good.verify_request("http://10.0.0.3:6066", "/users/u1", {}, proof, now=NOW) is None
    assert good.verify_request(OWNER, "/users/u2", {}, proof, now=NOW) is None
    assert good.verify_request(OWNER, "/users/u1", {"x": "1"}, proof, now=NOW) is None
    assert good.verify_request(OWNER, "/users/u1", {}, proof, now=NOW + PROOF_TTL_S + 1) is None
    for garbage in ("", "x", "1.2", "..", f"{int(NOW)}.n.{'0' * 64}", "é" * 100, proof + "0"):
        assert good.verify_request(OWNER, "/users/u1", {}, garbage, now=NOW) is None, garbage


def test_an_answer_not_signed_with_the_peer_token_is_not_taken() -> None:
    sender = PeerAuth("peer-s3cret")
    _, nonce = sender.sign_request(OWNER, "/stats", {}, now=NOW)
    forged = PeerAuth("guess").sign_reply(nonce, 200, b"{}")[PEER_REPLY_HEADER]
    real = PeerAuth("peer-s3cret").sign_reply(nonce, 200, b"{}")[PEER_REPLY_HEADER]
    assert not sender.verify_reply(nonce, 200, b"{}", forged)
    assert not sender.verify_reply(nonce, 200, b"{}", None)
    assert not sender.verify_reply(nonce, 200, b'{"x": 1}', real)  # another body
    assert not sender.verify_reply(nonce, 503, b"{}", real)  # another status
    assert not sender.verify_reply("another-nonce", 200, b"{}", real)  # an answer to another request
    assert sender.verify_reply(nonce, 200, b"{}", real)
