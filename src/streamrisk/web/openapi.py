"""The OpenAPI 3.0 document served at /openapi.json: every endpoint and every answer it can give."""

from __future__ import annotations

from typing import Any

# The contract's ids: 1..256 characters, no control characters (C0, DEL, C1).
ID_SCHEMA = {
    "type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]+$",
}
NUM_MAP = {"type": "object", "additionalProperties": {"type": "number"}}
INT_MAP = {"type": "object", "additionalProperties": {"type": "integer"}}
NULLABLE_NUM = {"type": "number", "nullable": True}

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "what was wrong, and the fix"}},
}
DECISION = {
    "type": "object",
    "nullable": True,
    "description": "the decision stored with the payment; null where the index holds none",
    "properties": {
        "decision_id": {"type": "string", "nullable": True},
        "action": {"type": "string", "enum": ["approve", "review", "decline"], "nullable": True},
        "score": {"type": "number", "nullable": True},
        "reasons": {"type": "array", "items": {"type": "string"}, "nullable": True},
        "rules_version": {"type": "string", "nullable": True},
    },
}
PAYMENT = {
    "type": "object",
    "required": ["event_id", "user_id", "merchant_id", "ts", "amount", "charged_back", "decision"],
    "properties": {
        "event_id": {"type": "string"},
        "user_id": {"type": "string"},
        "merchant_id": {"type": "string"},
        "ts": {"type": "integer"},
        "amount": {"type": "number"},
        "charged_back": {"type": "boolean"},
        "chargeback_id": {"type": "string", "nullable": True},
        "decision": DECISION,
        "partition": {"type": "integer"},
        "served_by": {"type": "string"},
    },
}
MERCHANT_DECISION = {
    "type": "object",
    "required": ["decision_id", "event_id", "user_id", "merchant_id", "ts", "amount", "action", "score",
                 "reasons", "rules_version"],
    "properties": {
        "decision_id": {"type": "string"},
        "event_id": {"type": "string", "description": "the payment"},
        "user_id": {"type": "string"},
        "merchant_id": {"type": "string"},
        "ts": {"type": "integer", "description": "payment time"},
        "amount": {"type": "number"},
        "action": {"type": "string", "enum": ["approve", "review", "decline"]},
        "score": {"type": "number"},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "rules_version": {"type": "string"},
    },
}
ALERTS = {
    "type": "array",
    "description": "latest alert time per reason code, newest first",
    "items": {
        "type": "object",
        "required": ["reason", "ts"],
        "properties": {"reason": {"type": "string"}, "ts": {"type": "integer"}},
    },
}


def _entity(kind: str, credit: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [f"{kind}_id", "features", credit, "credit_outstanding", "credit_available", "alerts"],
        "properties": {
            f"{kind}_id": {"type": "string"},
            "partition": {"type": "integer"},
            "served_by": {"type": "string", "description": "web URL of the worker that owns the key"},
            "latest_ts": {"type": "integer"},
            "features": NUM_MAP,
            credit: NULLABLE_NUM,
            "credit_outstanding": NULLABLE_NUM,
            "credit_available": NULLABLE_NUM,
            "pd": {"type": "number", "nullable": True, "minimum": 0, "maximum": 1,
                   "description": "probability of default over the credit policy's horizon"},
            "price_bp": {"type": "integer", "nullable": True,
                         "description": "annual price of the credit, basis points (the policy's PD band)"},
            "alerts": ALERTS,
            **extra,
        },
    }


AUDIT_ENTRY = {
    "type": "object",
    "required": ["control_id", "analyst", "resolution", "note", "action", "limit", "resolved_at"],
    "properties": {
        "control_id": {"type": "string", "description": "the control event's id (POST's answer)"},
        "analyst": {"type": "string"},
        "resolution": {"type": "string", "enum": ["approve", "fraud"]},
        "note": {"type": "string"},
        "action": {"type": "string", "enum": ["freeze", "unfreeze", "set_limit"], "nullable": True},
        "limit": NULLABLE_NUM,
        "resolved_at": {"type": "integer", "description": "epoch ms the analyst resolved it"},
    },
}
REVIEW_CASE = {
    "type": "object",
    "required": ["user_id", "payment_id", "merchant_id", "ts", "amount", "score", "reasons", "rules_version",
                 "status", "resolutions"],
    "properties": {
        "user_id": {"type": "string"},
        "payment_id": {"type": "string"},
        "merchant_id": {"type": "string"},
        "ts": {"type": "integer", "description": "payment time"},
        "amount": {"type": "number"},
        "score": {"type": "number"},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "rules_version": {"type": "string"},
        "status": {"type": "string", "enum": ["pending", "approve", "fraud"]},
        "resolutions": {"type": "integer", "description": "entries in the audit trail"},
        "audit": {"type": "array", "items": AUDIT_ENTRY, "description": "every resolution, oldest first"},
        "partition": {"type": "integer"},
        "served_by": {"type": "string"},
    },
}
RESOLUTION = {
    "type": "object",
    "required": ["user_id", "resolution", "analyst"],
    "additionalProperties": False,
    "properties": {
        "user_id": {**ID_SCHEMA, "description": "the payment's user (cases are kept per user)"},
        "resolution": {"type": "string", "enum": ["approve", "fraud"]},
        "analyst": {**ID_SCHEMA, "description": "who resolves it (named in the audit trail)"},
        "note": {"type": "string", "maxLength": 2000},
        "action": {"type": "string", "enum": ["freeze", "unfreeze", "set_limit"], "nullable": True},
        "limit": {"type": "number", "minimum": 0, "nullable": True,
                  "description": "the new credit limit (major units); with action set_limit only"},
    },
}
REVIEWS = {
    "type": "object",
    "required": ["reviews", "pending", "complete", "workers"],
    "properties": {
        "reviews": {"type": "array", "items": REVIEW_CASE,
                    "description": "pending cases, oldest payment first"},
        "pending": {"type": "integer", "description": "pending cases in all (of the workers that answered)"},
        "complete": {"type": "boolean", "description": "false when a worker did not answer"},
        "workers": {"type": "array", "items": {"type": "object"}},
    },
}

STATS = {
    "type": "object",
    "required": ["consumed", "dead_letters", "decisions", "alerts", "assigned_partitions", "ready"],
    "properties": {
        "worker": {"type": "string"},
        "ready": {"type": "boolean"},
        "waiting_for": {"type": "array", "items": {"type": "string"}},
        "consumed": INT_MAP,
        "dead_letters": {"type": "integer"},
        "dead_letter_classes": INT_MAP,
        "duplicates": {"type": "integer"},
        "decisions": INT_MAP,
        "alerts": INT_MAP,
        "assigned_partitions": {"type": "array", "items": {"type": "integer"}},
        "rebalances": {"type": "integer"},
        "consumer_lag": INT_MAP,
        "decision_latency_ms": {
            "type": "object",
            "properties": {
                "count": {"type": "integer"}, "p50": NULLABLE_NUM, "p99": NULLABLE_NUM,
                "buckets": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
            },
        },
        "entities_in_memory": INT_MAP,
        "rules_version": {"type": "string"},
        "topic_prefix": {"type": "string"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    what = {
        400: "malformed id or missing parameter",
        401: "missing or wrong bearer token (only when STREAMRISK_API_TOKEN is set)",
        404: "unknown id",
        502: "the key's owner is another worker, and it cannot be asked (STREAMRISK_API_TOKEN is set "
        "but STREAMRISK_PEER_TOKEN is not) or did not prove it belongs to this deployment",
        503: "rebalance or recovery in progress, or the key's owner did not answer; retry after "
        "Retry-After seconds",
    }
    return {str(c): _json(ERROR, what[c]) for c in codes}


def _get(summary: str, ok: dict[str, Any], *codes: int, params: list[dict[str, Any]] | None = None,
         open_: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {"200": ok, **_errors(*codes)}}
    if params:
        op["parameters"] = params
    if open_:
        op["security"] = []
    return {"get": op}


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": ID_SCHEMA}


def openapi_document(auth: bool) -> dict[str, Any]:
    """The document; with `auth`, every operation but /health and / declares the bearer scheme."""
    state = (400, 401, 404, 502, 503) if auth else (400, 404, 502, 503)
    ops = (401,) if auth else ()
    paths = {
        "/users/{user_id}": _get(
            "A user's features, credit limit and latest payments and alerts (any worker answers)",
            _json(_entity("user", "credit_limit", {"recent_payments": {"type": "array", "items": PAYMENT}}),
                  "the user"),
            *state, params=[_path_id("user_id")],
        ),
        "/merchants/{merchant_id}": _get(
            "A merchant's features, credit line, last decisions and latest alerts (any worker answers)",
            _json(_entity("merchant", "credit_line", {
                "credit_utilization": {**NULLABLE_NUM, "description": "credit_outstanding / credit_line"},
                "recent_decisions": {
                    "type": "array", "items": MERCHANT_DECISION,
                    "description": "the last decisions on payments to the merchant, newest payment first"}}),
                  "the merchant"),
            *state, params=[_path_id("merchant_id")],
        ),
        "/payments/{event_id}": _get(
            "A payment's decision and whether a chargeback matched it; payments are indexed per user, "
            "so user_id is required",
            _json(PAYMENT, "the payment"),
            *state,
            params=[_path_id("event_id"),
                    {"name": "user_id", "in": "query", "required": True, "schema": ID_SCHEMA}],
        ),
        "/reviews": _get(
            "The pending review cases of the whole deployment, oldest payment first (gathered from every "
            "worker)",
            _json(REVIEWS, "the queue"),
            *((400, 401, 503) if auth else (400, 503)),
            params=[{"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}],
        ),
        "/reviews/{payment_id}": {
            **_get(
                "A review case with its audit trail (any worker answers); user_id is required",
                _json(REVIEW_CASE, "the case"),
                *state,
                params=[_path_id("payment_id"),
                        {"name": "user_id", "in": "query", "required": True, "schema": ID_SCHEMA}],
            ),
            "post": {
                "summary": "Resolve a review case (approve or fraud), maybe with a credit override; "
                           "applied by the user's owner from the reviews control topic",
                "parameters": [_path_id("payment_id")],
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": RESOLUTION}}},
                "responses": {
                    "202": _json({"type": "object", "required": ["accepted", "control_id"],
                                  "properties": {"accepted": {"type": "boolean"},
                                                 "control_id": {"type": "string"},
                                                 "payment_id": {"type": "string"},
                                                 "user_id": {"type": "string"},
                                                 "topic": {"type": "string"}}},
                                 "sent to the reviews control topic"),
                    **_errors(*state),
                },
            },
        },
        "/health": _get("The process is up", _json({"type": "object", "required": ["status"],
                                                   "properties": {"status": {"type": "string"}}},
                                                  "up"), open_=True),
        "/ready": _get(
            "Partitions assigned and recovered, broadcast topics caught up, no rebalance",
            _json({"type": "object", "required": ["ready", "waiting_for"],
                   "properties": {"ready": {"type": "boolean"},
                                  "waiting_for": {"type": "array", "items": {"type": "string"}}}},
                  "ready"),
            *ops,
        ),
        "/metrics": _get("Prometheus text exposition", {
            "description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}, *ops),
        "/stats": _get("This worker's counters (the same ones /metrics exports)", _json(STATS, "counters"),
                       *ops),
        "/cluster": _get(
            "Every worker of the group with its partitions and /stats",
            _json({"type": "object", "required": ["workers"], "properties": {"workers": {
                "type": "array", "items": {"type": "object", "required": ["url", "partitions"],
                                           "properties": {"url": {"type": "string"},
                                                          "partitions": {"type": "array",
                                                                         "items": {"type": "integer"}},
                                                          "stats": STATS,
                                                          "error": {"type": "string"}}}}}},
                  "workers"),
            *ops,
        ),
        "/openapi.json": _get("This document", _json({"type": "object"}, "OpenAPI 3.0"), *ops),
        "/": _get("The dashboard (static page; it asks for the token when one is needed)", {
            "description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}, open_=True),
    }
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "StreamRisk worker API", "version": "1"},
        "paths": paths,
    }
    if auth:
        doc["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        doc["security"] = [{"bearer": []}]
    return doc
