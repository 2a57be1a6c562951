#!/usr/bin/env python3
"""Writes src/rest/openapi.json, the OpenAPI 3.1 document of the REST API.

The document is the contract the black-box tests validate every answer
against (tests/api/validate.py); edit this generator, run it, commit both:
    python3 tests/api/gen_openapi.py > src/rest/openapi.json
"""
import json


def nullable(t, **kw):
    return {"type": [t, "null"], **kw}


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props, required=None, extra=False, description=None):
    o = {"type": "object", "properties": props, "required": required if required is not None else list(props),
         "additionalProperties": extra}
    if description:
        o["description"] = description
    return o


FRESHNESS = {
    "fetched_at": {"type": "string", "format": "date-time", "description": "When the pool document was fetched (RFC 3339, UTC)."},
    "age_seconds": {"type": "number", "minimum": 0, "description": "Age of the document when answered."},
    "stale": {"type": "boolean", "description": "The latest fetch failed and this is the last good copy (served up to --api.stale-max)."},
    "source": {"type": "string", "description": "The pool's base URL, credentials removed."},
    "error": {"oneOf": [{"type": "null"}, ref("SnapshotError")], "description": "Why the copy is stale; null when fresh."},
}
CAP = {
    "connections_listed": {"type": "integer", "minimum": 0, "description": "Connections the pool's document listed, every copy of a repeated id included."},
    "connections_omitted": {"type": "integer", "minimum": 0, "description": "Distinct listed connections left out by --collector.max-connections (the worst are kept, as in a scrape). An id listed more than once counts once, its worst copy kept, so without repeated ids this is connections_listed minus those the answer is made from."},
}
NUM = {"type": "number"}
NNUM = nullable("number")

schemas = {
    "Error": obj({"error": obj({
        "code": {"type": "string", "enum": ["bad_query", "connection_not_found", "not_found", "rate_limited",
                                             "pool_timeout", "pool_unreachable", "pool_bad_answer",
                                             "method_not_allowed", "body_not_accepted", "unauthorized",
                                             "origin_not_allowed"]},
        "message": {"type": "string"}})}, description="Every error of the API."),
    "SnapshotError": obj({"code": {"type": "string"}, "message": {"type": "string"},
                          "at": {"type": "string", "format": "date-time"}}),
    "ConnectionId": {"type": ["integer", "string"], "description": "As the pool sent it."},
    "PoolConnection": obj({
        "connection_id": ref("ConnectionId"),
        "last_activity": {"type": "string", "format": "date-time",
                          "description": "Last read or write; for a connection never used (all the published pool lists), its creation."},
        "reconnects": NUM, "errors": NUM,
        "p95_latency_ms": {"type": "number", "description": "0 means no samples, not a fast connection."},
        "is_healthy": {"type": "boolean", "description": "Only from pool builds that return connections."},
        "remote_addr": {"type": "string"},
    }, required=["connection_id", "reconnects", "errors"]),
    "PoolStatus": obj({
        "endpoint": {"type": "string"},
        "active_connections": {"type": "number", "description": "The listed (idle) connections: 0 on a busy published pool."},
        "total_reconnects": NUM, "total_errors": NUM, "pool_p95_latency_ms": NUM,
        "connections": {"type": "array", "items": ref("PoolConnection")},
        "backend": {"type": "string"},
        "last_updated": {"type": "string", "format": "date-time"},
        **CAP,
        **FRESHNESS,
    }, required=["endpoint", "connections", *CAP, *FRESHNESS]),
    "ConnectionItem": obj({
        "connection_id": ref("ConnectionId"),
        "last_activity": {"type": "string", "format": "date-time"},
        "reconnects": NUM, "errors": NUM, "p95_latency_ms": NUM,
        "is_healthy": {"type": "boolean"}, "remote_addr": {"type": "string"},
        "healthy": {"type": "boolean", "description": "is_healthy where the pool reports it, else the pool's own rule: p95 within its 500 ms max_latency_ms."},
        "healthy_basis": {"type": "string", "enum": ["reported", "p95_within_pool_limit"]},
    }, required=["connection_id", "reconnects", "errors", "healthy", "healthy_basis"]),
    "ConnectionList": obj({
        "items": {"type": "array", "items": ref("ConnectionItem"), "maxItems": 1000},
        "total": {"type": "integer", "minimum": 0, "description": "Connections matching the filter, before paging."},
        "limit": {"type": "integer", "minimum": 0, "maximum": 1000},
        "offset": {"type": "integer", "minimum": 0},
        "sort": {"type": "string", "enum": ["id", "p95", "errors", "reconnects", "last_activity"]},
        "order": {"type": "string", "enum": ["asc", "desc"]},
        **CAP,
        **FRESHNESS,
    }),
    "ConnectionOne": obj({"connection": ref("ConnectionItem"), **FRESHNESS}),
    "PoolHealth": obj({
        "status": {"type": "string"}, "timestamp": {"type": "string", "format": "date-time"},
        "pool_healthy": {"type": "boolean"}, "active_connections": NUM,
        "error_rate": NUM, "avg_latency_ms": NUM,
    }, required=[], description="The pool's health document, normalized."),
    "ExporterView": obj({
        "pool_api_reachable": {"type": "boolean"},
        "assessment": {"type": "string", "enum": ["healthy", "busy", "failing_to_open", "idle_list_empty"],
                       "description": "healthy: the pool says so. busy: 503 because callers hold every connection while operations flow. failing_to_open: the pool's native errors counter (failures to open connections) rises. idle_list_empty: 503 and no operation measured in the window."},
        "explanation": {"type": "string"},
        "listed_connections": nullable("integer", minimum=0),
        "operations_per_second": nullable("number", minimum=0, description="Observations of the native latency histogram per second (reads, writes and TLS handshakes)."),
        "open_failures_total": NNUM,
        "open_failures_per_second": nullable("number", minimum=0),
        "window_seconds": nullable("number", minimum=0),
    }),
    "Health": obj({
        "status": {"type": "string", "enum": ["healthy", "unhealthy"]},
        "pool": ref("PoolHealth"),
        "exporter_view": ref("ExporterView"),
        **FRESHNESS,
    }),
    "Unknown": {"type": "array", "description": "Every null of the answer, with why it cannot be known.",
                "items": obj({"field": {"type": "string"}, "reason": {"type": "string"}})},
    "Stats": obj({
        "endpoint": {"type": "string"},
        "connections": obj({"listed": {"type": "integer", "minimum": 0}, "healthy": {"type": "integer", "minimum": 0},
                            "in_use": {"type": "null", "description": "The pool reports no count of checked-out connections."}}),
        "errors": obj({"listed_total": NUM, "seen_total": NNUM, "seen_per_second": NNUM}),
        "reconnects": obj({"listed_total": NUM, "seen_total": NNUM, "seen_per_second": NNUM}),
        "p95_latency_ms": obj({"connections_with_samples": {"type": "integer", "minimum": 0},
                               "min": NNUM, "median": NNUM, "p90": NNUM, "max": NNUM}),
        "connection_age_seconds": obj({"basis": {"const": "last_activity"}, "oldest": NNUM, "newest": NNUM}),
        "native": obj({
            "operations_per_second": NNUM, "observations_total": NNUM, "open_failures_total": NNUM,
            "open_failures_per_second": NNUM, "mean_latency_ms": NNUM,
            "latency_ms": obj({"p50": NNUM, "p95": NNUM, "p99": NNUM}),
            "latency_basis": {"enum": ["window", "since_pool_start", None]},
        }),
        "circuit_breaker_open": {"type": "null", "description": "Shown in no document of the pool."},
        "returns_connections": {"type": "boolean", "description": "Some listed connection shows use: the pool gives connections back, so their errors are visible."},
        "window_seconds": obj({"limit": {"type": "integer"}, "status": NNUM, "native": NNUM}),
        "unknown": ref("Unknown"),
        **FRESHNESS,
    }),
    "ServiceStatus": obj({
        "service": {"const": "secure-channel-exporter"},
        "version": {"type": "string"}, "revision": {"type": "string"},
        "timestamp": {"type": "string", "format": "date-time"},
        "uptime": {"type": "string", "examples": ["2h30m15s"]},
        "uptime_seconds": {"type": "number", "minimum": 0},
        "status": {"type": "string", "enum": ["ok", "degraded", "down"]},
        "secure_channel": obj({
            "status": {"type": "string", "enum": ["healthy", "unhealthy", "unreachable"]},
            "assessment": {"type": "string", "enum": ["healthy", "busy", "failing_to_open", "idle_list_empty", "unreachable"]},
            "pool_healthy": nullable("boolean"),
            "active_connections": NNUM, "error_rate": NNUM, "avg_latency_ms": NNUM,
            "endpoint": nullable("string"), "source": {"type": "string"}, "stale": {"type": "boolean"},
            "error": {"oneOf": [{"type": "null"}, obj({"code": {"type": "string"}, "message": {"type": "string"}})]},
        }),
        "performance": obj({
            "connection_pool_utilization": {"type": "null", "description": "Needs the checked-out count, which the pool does not report."},
            "avg_response_time_ms": NNUM, "error_rate_percent": NNUM, "operations_per_second": NNUM,
        }),
        "unknown": ref("Unknown"),
    }),
}


def err_response(description, headers=None):
    r = {"description": description, "content": {"application/json": {"schema": ref("Error")}}}
    if headers:
        r["headers"] = headers
    return r


responses = {
    "BadRequest": err_response("A query parameter cannot be used; the message names it."),
    "Unauthorized": err_response("Basic auth from --web.config.file is on and the credentials are missing or wrong.",
                                 {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    "NotFound": err_response("No such path under /api/, or no listed connection with this id."),
    "MethodNotAllowed": err_response("Only GET and HEAD (and OPTIONS with CORS on) are served.",
                                     {"Allow": {"schema": {"type": "string"}}}),
    "PayloadTooLarge": err_response("Requests with a body are refused."),
    "TooManyRequests": err_response("This client's token bucket is empty (--api.rate-limit).",
                                    {"Retry-After": {"description": "Seconds until a request is admitted.",
                                                     "schema": {"type": "integer", "minimum": 1}}}),
    "BadGateway": err_response("The pool cannot be reached or answers garbage, and no good copy younger than --api.stale-max is held."),
    "GatewayTimeout": err_response("The pool did not answer within --pool.timeout, and no good copy younger than --api.stale-max is held."),
}


def json_ok(schema, description):
    return {"description": description, "headers": {"Age": {"schema": {"type": "integer"}}},
            "content": {"application/json": {"schema": ref(schema)}}}


def rref(name):
    return {"$ref": f"#/components/responses/{name}"}


COMMON = {"401": rref("Unauthorized"), "405": rref("MethodNotAllowed"), "413": rref("PayloadTooLarge"),
          "429": rref("TooManyRequests")}
POOL = {"502": rref("BadGateway"), "504": rref("GatewayTimeout")}

preflight = {
    "summary": "CORS preflight (only with --api.cors-allowed-origins)",
    "tags": ["cors"],
    "security": [],
    "responses": {
        "204": {"description": "The origin is allowed.",
                "headers": {h: {"schema": {"type": "string"}} for h in
                            ["Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                             "Access-Control-Allow-Headers", "Access-Control-Max-Age", "Vary"]}},
        "403": err_response("The origin is not in --api.cors-allowed-origins."),
        "405": rref("MethodNotAllowed"),
    },
}


def path(op_id, summary, description, responses_, parameters=None, path_parameters=None):
    get = {"operationId": op_id, "summary": summary, "description": description,
           "responses": {**responses_, **COMMON}}
    if parameters:
        get["parameters"] = parameters
    item = {"get": get, "options": {**preflight, "operationId": op_id + "Preflight"}}
    if path_parameters:
        item["parameters"] = path_parameters
    return item


def qparam(name, schema, description):
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


paths = {
    "/api/v1/secure-channel/status": path(
        "getPoolStatus", "The pool's status document, normalized",
        "Times as RFC 3339 UTC, connection_id as the pool sent it, with the snapshot's freshness. The published pool lists only idle connections.",
        {"200": json_ok("PoolStatus", "The status document."), **POOL}),
    "/api/v1/secure-channel/health": path(
        "getPoolHealth", "The pool's health and the exporter's view",
        "200 when the pool says healthy, 503 when it says unhealthy. The published pool says unhealthy whenever its idle list is empty, which a busy working pool does: exporter_view.assessment tells busy from stuck. Never served stale: 502/504 when the pool cannot be asked.",
        {"200": json_ok("Health", "The pool says healthy."),
         "503": json_ok("Health", "The pool says unhealthy (idle list empty); see exporter_view."), **POOL}),
    "/api/v1/secure-channel/connections": path(
        "listConnections", "The listed connections, sorted, filtered and paged",
        "Ties keep the id order. healthy filters on is_healthy where reported, else on the pool's 500 ms p95 rule. Only the connections kept under --collector.max-connections (the worst) are listed; connections_omitted says how many are not.",
        {"200": json_ok("ConnectionList", "A page of connections."), "400": rref("BadRequest"), **POOL},
        [qparam("sort", {"type": "string", "enum": ["id", "p95", "errors", "reconnects", "last_activity"], "default": "id"}, "Sort key."),
         qparam("order", {"type": "string", "enum": ["asc", "desc"], "default": "asc"}, "Sort order."),
         qparam("limit", {"type": "integer", "minimum": 0, "maximum": 1000, "default": 100}, "Page size."),
         qparam("offset", {"type": "integer", "minimum": 0, "default": 0}, "Items skipped."),
         qparam("healthy", {"type": "boolean"}, "Only healthy (true) or unhealthy (false) connections.")]),
    "/api/v1/secure-channel/connections/{id}": path(
        "getConnection", "One listed connection",
        "404 when no listed connection has this id: the published pool never lists a checked-out connection again.",
        {"200": json_ok("ConnectionOne", "The connection."), "404": rref("NotFound"), **POOL},
        path_parameters=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "The connection_id, as text."}]),
    "/api/v1/secure-channel/stats": path(
        "getPoolStats", "Aggregates over the listed connections and the native metrics",
        "What the pool cannot tell is null, with the reason in unknown. Rates are over the cache's window of snapshots (up to 300 s).",
        {"200": json_ok("Stats", "The aggregates."), **POOL}),
    "/api/v1/secure-channel/metrics": path(
        "getPoolMetrics", "The pool's native metrics as it sent them",
        "The pool's exposition as it sent it (secrets removed), in its own format: Prometheus text 0.0.4 or OpenMetrics 1.0, as the Content-Type says. Age and X-Snapshot-Stale headers tell its freshness.",
        {"200": {"description": "The native exposition.",
                 "headers": {"Age": {"schema": {"type": "integer"}},
                             "X-Snapshot-Stale": {"schema": {"type": "string", "enum": ["true", "false"]}}},
                 "content": {"text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}},
                             "application/openmetrics-text; version=1.0.0; charset=utf-8": {"schema": {"type": "string"}}}},
         **POOL}),
    "/api/v1/status": path(
        "getServiceStatus", "The service's enhanced status",
        "The enhanced status of the pool's earlier Go service, without its application-specific memory_protection: 200 for ok and degraded, 503 when the pool is down.",
        {"200": json_ok("ServiceStatus", "ok or degraded."), "503": json_ok("ServiceStatus", "down: the pool cannot be asked.")}),
    "/api/v1/openapi.json": path(
        "getOpenApi", "This document", "The OpenAPI 3.1 document of the API.",
        {"200": {"description": "This document.", "content": {"application/json": {"schema": {"type": "object"}}}}}),
}

doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "secure-channel-exporter REST API",
        "version": "1.0.0",
        "description": "Views of a SecureChannelPool from one cached snapshot (--api.cache-ttl, default 2s; stale-if-error up to --api.stale-max, default 5m). Errors are {\"error\":{\"code\",\"message\"}}; unknown paths under /api/ answer 404 with that body.",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "servers": [{"url": "/"}],
    "security": [{}, {"basicAuth": []}],
    "paths": paths,
    "components": {
        "schemas": schemas,
        "responses": responses,
        "securitySchemes": {"basicAuth": {"type": "http", "scheme": "basic",
                                          "description": "When --web.config.file sets basic_auth_users."}},
    },
}
print(json.dumps(doc, indent=2))
