"""HTTP endpoints of the topology: the graph API and the health check."""

from __future__ import annotations

import logging
import math

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from collector.redis_client import REDIS_ERRORS
from collector.schema import SchemaError
from webapp.accounts.access import topology_reader
from webapp.builder.keys import GraphKeys
from webapp.builder.stored import stored_client, stored_graph
from webapp.topology import service

log = logging.getLogger("portolan.webapp.topology")


def redis_unreachable(exc: Exception) -> JsonResponse:
    """503: the reply says what is wrong, the log says where (Redis' address
    is no business of the page)."""
    log.warning("Redis unreachable: %s", exc)
    return JsonResponse({"error": "Redis unreachable"}, status=503)


def requested_time(request) -> float | None:
    """The unix time of ``?at=`` (ISO time), None for the live map; a
    ValueError that says what is wrong with a bad one."""
    text = request.GET.get("at")
    return service.parse_time(text) if text else None


@require_GET
def healthz(request):
    """No login: Redis reachable or not, how many collectors reported lately
    and which rule checks raised (how often, when, the error's type); which
    hosts they are and the error's text (it may name a container) are for
    logged-in users only."""
    ok, body = service.health()
    if not request.user.is_authenticated:
        body = {**body, "collectors": len(body["collectors"])}
        if "rule_failures" in body:
            body["rule_failures"] = [
                {k: v for k, v in f.items() if k != "error"}
                for f in body["rule_failures"]]
    return JsonResponse(body, status=200 if ok else 503)


@require_GET
@topology_reader
def api_rule_failures(request):
    """The analyzer's rule checks that raised lately, for the map's status
    bar (a login or an API token needed)."""
    try:
        failures = service.rule_failures()
    except REDIS_ERRORS as exc:
        return redis_unreachable(exc)
    return JsonResponse({"rule_failures": failures})


@require_GET
@topology_reader
def api_graph(request):
    """The graph at ``?level=`` (live, or at ``?at=`` ISO time) as NetworkX
    node-link JSON; a login or an API token needed. Live, it is the graph
    builder's stored level when the builder keeps it current, else built here."""
    level = request.GET.get("level", "container")
    if level not in service.LEVELS:
        return JsonResponse(
            {"error": f"unknown level; use one of {', '.join(service.LEVELS)}"},
            status=400,
        )
    try:
        at = requested_time(request)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    try:
        payload = None if at is not None else stored_graph(
            stored_client(), GraphKeys(service.keys().prefix), level)
        if payload is None:
            payload = service.graph_payload(service.current_graph(level, at))
    except REDIS_ERRORS as exc:
        return redis_unreachable(exc)
    return JsonResponse(payload)


@require_GET
@topology_reader
def api_node(request):
    """One node's details for the map's panel, live or at ``?at=`` (a login or
    an API token needed)."""
    node_id = request.GET.get("id", "")
    try:
        window = float(request.GET.get("window", "900"))
        service.level_of(node_id)
    except (ValueError, SchemaError):
        return JsonResponse({"error": "bad node id or window"}, status=400)
    if not math.isfinite(window):
        # nan passes min/max unchanged and Redis refuses it as a score.
        return JsonResponse(
            {"error": "window must be a finite number of seconds"}, status=400
        )
    window = min(max(window, 1.0), 3600.0)
    try:
        at = requested_time(request)
    except ValueError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    try:
        body = service.node_details(node_id, window, at)
    except KeyError:
        where = "the live map" if at is None else "the map at that time"
        return JsonResponse({"error": f"no such node on {where}"}, status=404)
    except REDIS_ERRORS as exc:
        return redis_unreachable(exc)
    return JsonResponse(body)


__all__ = ["api_graph", "api_node", "api_rule_failures", "healthz"]
