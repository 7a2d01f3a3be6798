"""The worker's HTTP endpoints (Faust's web server): state API, operations, OpenAPI, dashboard.

Every worker answers for every key: a key whose partition another worker owns is forwarded to it
(owner.py). While the group rebalances or the table recovers, state answers 503 with Retry-After
instead of a wrong 404.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import aiohttp
import faust
import orjson
from aiokafka import AIOKafkaProducer
from faust.web import Request, Response, View
from yarl import URL

from ..core.events import InvalidRecord
from ..core.processor import Processor
from ..core.reviews import resolution_of, resolution_record
from ..runtime.broadcast import BroadcastReader
from ..runtime.runner import BatchObserver
from .auth import BearerAuth
from .http_errors import serve_json_errors
from .lookup import entity_of, merchant_body, payment_body, review_body, user_body
from .metrics import CONTENT_TYPE, WorkerMetrics, adjustments, buckets, count, quantile
from .openapi import openapi_document
from .owner import FORWARDED_HEADER, Owners, forward
from .peer import PEER_HEADER, PEER_REPLY_HEADER, PROOF_TTL_S, PeerAuth

MAX_ID_CHARS = 256
RETRY_AFTER_S = "1"
CLUSTER_TIMEOUT_S = 2.0
REVIEWS_DEFAULT = 100  # GET /reviews: the oldest this many pending cases (?limit=, at most REVIEWS_MAX)
REVIEWS_MAX = 1000
Handler = Callable[..., Awaitable[Response]]


NO_PEER_TOKEN = (
    "this worker's HTTP API needs a bearer token (STREAMRISK_API_TOKEN) but it has no "
    "STREAMRISK_PEER_TOKEN, so it does not forward requests to other workers (it would have to send "
    "your token to whatever URL a group member advertises): set the same STREAMRISK_PEER_TOKEN on "
    "every worker of the deployment, or ask the owner directly"
)
PEER_REFUSED = (
    "peer proof (X-StreamRisk-Peer) rejected: the sender's STREAMRISK_PEER_TOKEN differs from this "
    f"worker's, the proof is for another URL or path, or it is older than {PROOF_TTL_S} s"
)


class PeerRefused(Exception):
    """Another worker is not asked, or its answer is not taken: the message says why."""


def id_problem(what: str, value: str) -> str | None:
    """Why `value` cannot be an id (the contract's rules for ids), or None."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > MAX_ID_CHARS:
        return f"{what} is longer than {MAX_ID_CHARS} characters"
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        return f"{what} must not contain control characters"
    return None


def register_routes(
    app: faust.App,
    processor: Processor,
    runtime_stats: Callable[[], dict[str, Any]] | None = None,
    broadcast: BroadcastReader | None = None,
    batch_observers: list[BatchObserver] | None = None,
) -> None:
    """Add every endpoint to the app's web server.

    `runtime_stats()` adds the batch runner's figures to /stats; `broadcast` is waited for by /ready;
    /metrics observes each batch through `batch_observers` (the batch runner's).
    """
    settings = processor.settings
    auth = BearerAuth(settings.api_token)
    peer = PeerAuth(settings.peer_token)
    topic = processor.input_topics[0]
    owners = Owners(app, topic, settings.partitions)
    metrics = WorkerMetrics(processor)
    if batch_observers is not None:
        batch_observers.append(metrics.observe_batch)
    inputs = set(processor.input_topics)
    dashboard = resources.files(__package__).joinpath("static/dashboard.html").read_bytes()
    # Faust's production index also mounts "/" (a bare status page); the dashboard takes its place.
    blueprints = app.web.blueprints
    blueprints._enabled = [(p, bp) for p, bp in blueprints._enabled if "production_index" not in str(bp)]
    serve_json_errors(app.web)  # a request too long to read answers JSON too, without a traceback

    def waiting_for() -> list[str]:
        """What /ready still waits for; empty when ready."""
        out = []
        if app.rebalancing:
            out.append("rebalance in progress")
        if not app.tables.recovery.completed.is_set():
            out.append("state table recovery")
        if broadcast is not None and not broadcast.ready.is_set():
            out.append("rules and merchant summaries (broadcast topics) catching up")
        return out

    def unavailable(view: View, why: str) -> Response:
        return view.json({"error": why}, status=503, headers={"Retry-After": RETRY_AFTER_S})

    def page(path: str, post: Handler | None = None) -> Callable[[Handler], None]:
        """Register `handler(view, request, **params)` at `path` for GET, behind the bearer check; and
        `post` for POST, behind the bearer token only (requests between workers never POST)."""
        post_handler = post  # the class body below defines a `post` of its own

        def register(handler: Handler) -> None:
            class Page(View):
                if post_handler is not None:
                    async def post(self, request: Request, **params: str) -> Response:
                        authorization = request.headers.get("Authorization")
                        if not auth.allows(request.path, authorization):
                            body, headers = auth.denial(authorization)
                            return self.json(body, status=401, headers=headers)
                        return await post_handler(self, request, **params)

                async def get(self, request: Request, **params: str) -> Response:
                    authorization = request.headers.get("Authorization")
                    proof = request.headers.get(PEER_HEADER)
                    if proof is not None:  # from another worker: its proof instead of a token
                        url = request.rel_url
                        nonce = peer.verify_request(owners.own_url, url.path, url.query, proof)
                        if nonce is None:
                            return self.json({"error": PEER_REFUSED}, status=401)
                        response = await handler(self, request, **params)
                        response.headers.update(peer.sign_reply(nonce, response.status, response.body))
                        return response
                    if not auth.allows(request.path, authorization):
                        body, headers = auth.denial(authorization)
                        return self.json(body, status=401, headers=headers)
                    return await handler(self, request, **params)

            Page.__name__ = f"Page_{handler.__name__}"
            app.page(path, name=handler.__name__)(Page)

        return register

    async def ask_peer(
        url: str, request_path: str, query: Any, path_qs: str
    ) -> tuple[int, bytes, dict[str, str]]:
        """GET `path_qs` from the worker at `url` with this worker's peer proof; the answer, once it
        proved to come from a worker of this deployment. PeerRefused when it cannot be asked or did
        not prove it; aiohttp and OS errors as `forward` raises them."""
        if auth.enabled and not peer.enabled:
            raise PeerRefused(f"not asked: {NO_PEER_TOKEN}")
        headers = {FORWARDED_HEADER: owners.own_url}
        nonce = None
        if peer.enabled:
            proof, nonce = peer.sign_request(url, request_path, query)
            headers.update(proof)
        status, raw, passed = await forward(app, url, path_qs, headers)
        reply = passed.pop(PEER_REPLY_HEADER, None)
        if nonce is not None and not peer.verify_reply(nonce, status, raw, reply):
            raise PeerRefused(
                f"{url} did not prove it is a worker of this deployment (its answer, {status}, is not "
                "signed with this worker's STREAMRISK_PEER_TOKEN): set the same STREAMRISK_PEER_TOKEN "
                "on every worker, and check which processes join the consumer group"
            )
        return status, raw, passed

    async def routed(
        view: View, request: Request, what: str, key: str, answer: Callable[[int], dict[str, Any] | None]
    ) -> Response:
        """Answer for `key` here if this worker owns it, else from its owner."""
        if problem := id_problem(what, key):
            return view.json({"error": problem}, status=400)
        if busy := waiting_for():
            return unavailable(view, f"not answering state queries yet: {', '.join(busy)}")
        route = owners.route(key)
        if route.local:
            body = answer(route.partition)
            if body is None:
                return view.json({"error": f"unknown {what} {key!r}"}, status=404)
            body["served_by"] = owners.own_url
            return view.json(body)
        if route.url is None or request.headers.get(FORWARDED_HEADER):
            return unavailable(view, f"owner of partition {route.partition} not known here yet (rebalance)")
        try:
            with metrics.forward_seconds.time():
                url = request.rel_url
                status, raw, passed = await ask_peer(route.url, url.path, url.query, request.path_qs)
        except PeerRefused as exc:
            why = f"partition {route.partition} is owned by {route.url}; {exc}"
            return view.json({"error": why}, status=502)
        except (TimeoutError, OSError, aiohttp.ClientError) as exc:
            why = f"owner {route.url} of partition {route.partition} did not answer: {exc!r}"
            return unavailable(view, why)
        return view.bytes(raw, status=status, headers=passed)

    def entity_page(kind: str, body: Callable[..., dict[str, Any]]) -> None:
        """`GET /{kind}s/{id}`: the entity's answer from whichever worker owns it."""

        async def handler(view: View, request: Request, **params: str) -> Response:
            entity_id = params[f"{kind}_id"]

            def answer(partition: int) -> dict[str, Any] | None:
                entity = entity_of(processor, kind, entity_id)
                return None if entity is None else body(processor, entity_id, entity, partition)

            return await routed(view, request, kind, entity_id, answer)

        handler.__name__ = kind
        page(f"/{kind}s/{{{kind}_id}}")(handler)

    entity_page("user", user_body)
    entity_page("merchant", merchant_body)

    @page("/payments/{event_id}")
    async def payment(view: View, request: Request, event_id: str) -> Response:
        user_id, refused = _user_of(view, request, "payments are indexed per user",
                                    "/payments/{event_id}", ("event_id", event_id))
        if refused is not None:
            return refused

        def answer(partition: int) -> dict[str, Any] | None:
            found = processor.payment_index.find(user_id, event_id)
            return None if found is None else {"partition": partition, **payment_body(found, user_id)}

        return await routed(view, request, f"payment {event_id!r} of user", user_id, answer)

    # -- the analysts' review queue (docs/http-api.md, "Review queue")
    def review_answer(user_id: str, payment_id: str) -> Callable[[int], dict[str, Any] | None]:
        def answer(partition: int) -> dict[str, Any] | None:
            case = processor.reviews.get(user_id, payment_id)
            return None if case is None else {"partition": partition, **review_body(case, audit=True)}

        return answer

    producer: list[AIOKafkaProducer] = []  # started on the first resolution
    starting = asyncio.Lock()

    async def produce_resolution(key: str, value: dict[str, Any]) -> None:
        async with starting:
            if not producer:
                # Not idempotent (Tansu refuses it): a record sent twice carries one control_id, applied once.
                p = AIOKafkaProducer(bootstrap_servers=settings.bootstrap.split(","), acks="all")
                await p.start()
                producer.append(p)
        await producer[0].send_and_wait(processor.t_reviews, orjson.dumps(value), key=key.encode())

    @app.on_before_shutdown.connect
    async def stop_producer(app: faust.App, **_: Any) -> None:
        if producer:
            await producer.pop().stop()

    async def resolve(view: View, request: Request, payment_id: str) -> Response:
        """`POST /reviews/{payment_id}`: check the resolution and its case, then produce the control
        event keyed by the user (its owner applies it); 202 with its `control_id`."""
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            return view.json({"error": f"body is not valid JSON: {exc}"}, status=400)
        if type(body) is not dict:
            return view.json({"error": "body must be a JSON object"}, status=400)
        extra = sorted(set(body) - {"user_id", "resolution", "analyst", "note", "action", "limit"})
        if extra:
            return view.json({"error": f"unknown field(s) {', '.join(extra)} (fields: user_id, "
                                       "resolution, analyst, note, action, limit)"}, status=400)
        record = resolution_record(body, payment_id, int(time.time() * 1000))
        user_id = record["user_id"]
        if problem := id_problem("payment_id", payment_id) or (
            "user_id must be a string" if type(user_id) is not str else id_problem("user_id", user_id)
        ):
            return view.json({"error": problem}, status=400)
        # The case must exist: asked of the user's owner (a best-effort check; the owner checks again).
        # Before the body's other fields are checked: a resolution of no case is a 404 however written.
        if busy := waiting_for():
            return unavailable(view, f"not answering state queries yet: {', '.join(busy)}")
        route = owners.route(user_id)
        if route.local:
            found = processor.reviews.get(user_id, payment_id) is not None
        elif route.url is None:
            return unavailable(view, f"owner of partition {route.partition} not known here yet (rebalance)")
        else:
            path = f"/reviews/{payment_id}"
            query = {"user_id": user_id}
            try:
                status, _, _ = await ask_peer(route.url, path, query, str(URL.build(path=path, query=query)))
            except PeerRefused as exc:
                return view.json({"error": f"partition {route.partition} is owned by {route.url}; {exc}"},
                                 status=502)
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                return unavailable(view, f"owner {route.url} of partition {route.partition} did not "
                                         f"answer: {exc!r}")
            if status not in (200, 404):
                return unavailable(view, f"owner {route.url} answered {status}")
            found = status == 200
        if not found:
            return view.json({"error": f"no review case for payment {payment_id!r} of user {user_id!r}"},
                             status=404)
        try:
            resolution_of(record, processor.validator, user_id.encode(), record["ts"])
        except InvalidRecord as exc:
            return view.json({"error": str(exc)}, status=400)
        try:
            await produce_resolution(user_id, record)
        except Exception as exc:  # the broker did not take it: the analyst tries again
            return unavailable(view, f"resolution not sent to {processor.t_reviews}: {exc!r}")
        return view.json({"accepted": True, "control_id": record["control_id"], "payment_id": payment_id,
                          "user_id": user_id, "topic": processor.t_reviews}, status=202)

    @page("/reviews/{payment_id}", post=resolve)
    async def review(view: View, request: Request, payment_id: str) -> Response:
        user_id, refused = _user_of(view, request, "review cases are kept per user",
                                    "/reviews/{payment_id}", ("payment_id", payment_id))
        if refused is not None:
            return refused
        return await routed(view, request, f"review case of payment {payment_id!r} of user", user_id,
                            review_answer(user_id, payment_id))

    @page("/reviews")
    async def reviews(view: View, request: Request) -> Response:
        """The pending review cases of the whole deployment, oldest payment first: each worker's own
        (`?scope=local`), gathered from every group member like /cluster."""
        try:
            limit = int(request.query.get("limit", REVIEWS_DEFAULT))
        except ValueError:
            limit = -1
        if not 1 <= limit <= REVIEWS_MAX:
            return view.json({"error": f"limit must be an integer from 1 to {REVIEWS_MAX}"}, status=400)
        if busy := waiting_for():
            return unavailable(view, f"not answering state queries yet: {', '.join(busy)}")
        owned = owners.owned()

        def local() -> dict[str, Any]:
            cases, total = processor.reviews.pending(limit, owned)
            return {"reviews": [review_body(c) for c in cases], "pending": total, "partitions": owned}

        if request.query.get("scope") == "local":
            return view.json(local())
        members = owners.members() or {owners.own_url: owned}

        async def one(url: str) -> dict[str, Any]:
            if url == owners.own_url:
                return {"url": url, **local()}
            query = {"scope": "local", "limit": str(limit)}
            try:
                status, raw, _ = await asyncio.wait_for(
                    ask_peer(url, "/reviews", query, str(URL.build(path="/reviews", query=query))),
                    CLUSTER_TIMEOUT_S,
                )
                if status != 200:
                    return {"url": url, "error": f"/reviews answered {status}"}
                return {"url": url, **orjson.loads(raw)}
            except PeerRefused as exc:
                return {"url": url, "error": str(exc)}
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                return {"url": url, "error": f"not answering: {exc!r}"}
            except ValueError as exc:
                return {"url": url, "error": f"/reviews is not JSON: {exc}"}

        workers = await asyncio.gather(*(one(u) for u in sorted(members)))
        cases = sorted((c for w in workers for c in w.get("reviews", ())),
                       key=lambda c: (c["ts"], c["user_id"], c["payment_id"]))
        return view.json({
            "reviews": cases[:limit],
            "pending": sum(w.get("pending", 0) for w in workers),
            "complete": not any("error" in w for w in workers),
            "workers": [{k: v for k, v in w.items() if k != "reviews"} for w in workers],
        })

    @page("/health")
    async def health(view: View, request: Request) -> Response:
        # A failed checkpoint stops the worker; until it is gone, this says why (one line).
        failure = runtime_stats().get("checkpoint_failure") if runtime_stats is not None else None
        if failure:
            return view.json({"status": "failed", "reason": failure}, status=503)
        return view.json({"status": "ok"})

    @page("/ready")
    async def ready(view: View, request: Request) -> Response:
        busy = waiting_for()
        if busy:
            return view.json({"ready": False, "waiting_for": busy}, status=503,
                             headers={"Retry-After": RETRY_AFTER_S})
        return view.json({"ready": True, "waiting_for": []})

    @page("/metrics")
    async def prometheus(view: View, request: Request) -> Response:
        await metrics.refresh(app, inputs, lambda: not waiting_for())
        return view.bytes(metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def local_stats() -> dict[str, Any]:
        await metrics.refresh(app, inputs, lambda: not waiting_for())
        body = processor.stats()
        if runtime_stats is not None:
            body.update(runtime_stats())
        body["worker"] = owners.own_url
        body["ready"] = not waiting_for()
        body["waiting_for"] = waiting_for()
        # Which input partitions this worker decides for: where to ask for an entity.
        body["assigned_partitions"] = owners.owned()
        body["consumer_lag"] = metrics.lag_by_partition()
        body["decision_latency_ms"] = {
            "count": count(metrics.latency),
            "p50": _ms(quantile(metrics.latency, 0.5)),
            "p99": _ms(quantile(metrics.latency, 0.99)),
            # Cumulative counts per bucket (upper bound in s): clients take quantiles over a window.
            "buckets": buckets(metrics.latency),
        }
        body["topic_prefix"] = settings.topic_prefix
        body["credit_adjustments"] = adjustments(processor)
        body["entities_in_memory"] = {"user": len(processor.users.slots),
                                      "merchant": len(processor.merchants.slots)}
        return body

    @page("/stats")
    async def stats(view: View, request: Request) -> Response:
        return view.json(await local_stats())

    @page("/cluster")
    async def cluster(view: View, request: Request) -> Response:
        """Every group member's /stats (this one's directly, the others' over HTTP)."""
        members = owners.members() or {owners.own_url: owners.owned()}

        async def one(url: str, partitions: list[int]) -> dict[str, Any]:
            entry: dict[str, Any] = {"url": url, "partitions": partitions}
            if url == owners.own_url:
                entry["stats"] = await local_stats()
                return entry
            try:
                status, raw, _ = await asyncio.wait_for(
                    ask_peer(url, "/stats", {}, "/stats"), CLUSTER_TIMEOUT_S
                )
                if status != 200:
                    entry["error"] = f"/stats answered {status}"
                else:
                    entry["stats"] = orjson.loads(raw)
            except PeerRefused as exc:
                entry["error"] = str(exc)
            except (TimeoutError, OSError, aiohttp.ClientError) as exc:
                entry["error"] = f"not answering: {exc!r}"
            except ValueError as exc:  # not JSON: not one of ours, or a broken answer
                entry["error"] = f"/stats is not JSON: {exc}"
            return entry

        workers = await asyncio.gather(*(one(u, p) for u, p in sorted(members.items())))
        return view.json({"workers": list(workers)})

    spec = openapi_document(auth.enabled)

    @page("/openapi.json")
    async def openapi(view: View, request: Request) -> Response:
        return view.json(spec)

    @page("/")
    async def index(view: View, request: Request) -> Response:
        return view.bytes(dashboard, headers={"Content-Type": "text/html; charset=utf-8"})


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _user_of(
    view: View, request: Request, why: str, path: str, named: tuple[str, str]
) -> tuple[str, Response | None]:
    """The `user_id` query parameter a per-user lookup needs, or the 400 that says what is missing or
    malformed (`named`: the path's own id, checked too)."""
    user_id = request.query.get("user_id")
    if not user_id:
        return "", view.json(
            {"error": f"query parameter user_id is required: {why} (GET {path}?user_id=...)"}, status=400
        )
    if problem := id_problem(*named) or id_problem("user_id", user_id):
        return user_id, view.json({"error": problem}, status=400)
    return user_id, None
