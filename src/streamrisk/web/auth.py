"""Bearer-token check for the HTTP API (STREAMRISK_API_TOKEN).

Without a token (only allowed on a loopback bind, see Settings.check) every request passes. With one,
every endpoint but the open ones needs `Authorization: Bearer <token>`, compared in constant time.
"""

from __future__ import annotations

import hmac

# Paths that answer without a token: liveness, and the dashboard's static shell (it holds no data;
# the page asks for the token and sends it with every API call it makes).
OPEN_PATHS = frozenset({"/health", "/"})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="streamrisk"'}


class BearerAuth:
    """Says whether a request may be served. The token is never sent on to another worker: requests
    between workers carry a peer proof instead (peer.py)."""

    def __init__(self, token: str | None) -> None:
        self._expected = f"Bearer {token}".encode() if token else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def allows(self, path: str, authorization: str | None) -> bool:
        if self._expected is None or path in OPEN_PATHS:
            return True
        given = (authorization or "").encode("utf-8", "replace")
        return hmac.compare_digest(given, self._expected)

    def denial(self, authorization: str | None) -> tuple[dict[str, str], dict[str, str]]:
        """The 401 body and headers; the body says which of the two mistakes it was."""
        error = "wrong bearer token" if authorization else "missing Authorization: Bearer <token> header"
        return {"error": error}, dict(CHALLENGE)
