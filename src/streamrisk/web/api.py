"""HTTP API on the worker's web port: entity features and the worker's counters.

Only entities of the partitions this worker owns are answered here; routing a key to its owner comes
with the full API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.types import TP
from faust.web import Request, Response, View

from ..processor import Processor


def register_routes(
    app: faust.App, processor: Processor, runtime_stats: Callable[[], dict[str, Any]]
) -> None:
    token = processor.settings.api_token
    owned_topic = processor.input_topics[0]

    def owns(partition: int) -> bool:
        return TP(owned_topic, partition) in app.consumer.assignment()

    def denied(view: View, request: Request) -> Response | None:
        if token and request.headers.get("Authorization") != f"Bearer {token}":
            return view.json({"error": "missing or wrong bearer token"}, status=401)
        return None

    def entity_page(kind: str, store: Any, credit_field: str) -> None:
        """`GET /{kind}s/{id}`: the entity's features, or 404 with a JSON error."""

        @app.page(f"/{kind}s/{{entity_id}}")
        class EntityView(View):
            async def get(self, request: Request, entity_id: str) -> Response:
                if (resp := denied(self, request)) is not None:
                    return resp
                entity = store.get(entity_id, owns)
                if entity is None:
                    return self.json({"error": f"unknown {kind} {entity_id!r}"}, status=404)
                body: dict[str, Any] = {
                    f"{kind}_id": entity_id,
                    "latest_ts": entity.latest,
                    "features": entity.features(),
                    credit_field: None,  # credit policy comes with its own issue
                }
                return self.json(body)

    entity_page("user", processor.users, "credit_limit")
    entity_page("merchant", processor.merchants, "credit_line")

    @app.page("/stats")
    class StatsView(View):
        async def get(self, request: Request) -> Response:
            if (resp := denied(self, request)) is not None:
                return resp
            body = processor.stats()
            body.update(runtime_stats())
            # Which input partitions this worker decides for: where to ask for an entity.
            body["assigned_partitions"] = sorted(
                tp.partition for tp in app.consumer.assignment() if tp.topic == owned_topic
            )
            return self.json(body)
