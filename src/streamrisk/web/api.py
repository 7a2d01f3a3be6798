"""HTTP API on the worker's web port: entity features and the worker's counters.

Only entities of the partitions this worker owns are answered here; routing a key to its owner comes
with the full API.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.types import TP
from faust.web import Request, Response, View

from ..processor import Processor


def register_routes(app: faust.App, processor: Processor) -> None:
    token = processor.settings.api_token
    owned_topic = processor.input_topics[0]

    def owns(partition: int) -> bool:
        return TP(owned_topic, partition) in app.consumer.assignment()

    def denied(view: View, request: Request) -> Response | None:
        if token and request.headers.get("Authorization") != f"Bearer {token}":
            return view.json({"error": "missing or wrong bearer token"}, status=401)
        return None

    @app.page("/users/{user_id}")
    class UserView(View):
        async def get(self, request: Request, user_id: str) -> Response:
            if (resp := denied(self, request)) is not None:
                return resp
            user = processor.users.get(user_id, owns)
            if user is None:
                return self.json({"error": f"unknown user {user_id!r}"}, status=404)
            body: dict[str, Any] = {
                "user_id": user_id,
                "latest_ts": user.latest,
                "features": user.features(),
                "credit_limit": None,
            }
            return self.json(body)

    @app.page("/merchants/{merchant_id}")
    class MerchantView(View):
        async def get(self, request: Request, merchant_id: str) -> Response:
            if (resp := denied(self, request)) is not None:
                return resp
            merchant = processor.merchants.get(merchant_id, owns)
            if merchant is None:
                return self.json({"error": f"unknown merchant {merchant_id!r}"}, status=404)
            body: dict[str, Any] = {
                "merchant_id": merchant_id,
                "latest_ts": merchant.latest,
                "features": merchant.features(),
                "credit_line": None,
            }
            return self.json(body)

    @app.page("/stats")
    class StatsView(View):
        async def get(self, request: Request) -> Response:
            if (resp := denied(self, request)) is not None:
                return resp
            return self.json(processor.counters.with_state(processor.users, processor.merchants))
