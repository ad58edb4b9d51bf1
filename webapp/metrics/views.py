"""GET /metrics: the Prometheus exposition, behind a bearer token.

No token configured (PORTOLAN_METRICS_TOKEN unset) means the endpoint does not
exist (404); a missing or wrong token gets 401. The token is compared in
constant time.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse, HttpResponseNotFound
from django.views.decorators.http import require_GET
from prometheus_client.exposition import choose_encoder

from webapp.metrics.registry import registry

__all__ = ["bearer_token", "metrics"]


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None.

    >>> bearer_token("Bearer abc")
    'abc'
    >>> bearer_token("Basic abc") is None
    True
    """
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _authorized(request, expected: str) -> bool:
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        return False
    # Header values arrive as latin-1 text; the configured token is ASCII.
    return hmac.compare_digest(token.encode("latin-1", "replace"),
                               expected.encode("ascii"))


@require_GET
def metrics(request):
    """The topology's metric families in the format the scraper asks for."""
    expected = settings.PORTOLAN_METRICS["TOKEN"]
    if not expected:
        return HttpResponseNotFound("metrics are off: set PORTOLAN_METRICS_TOKEN\n",
                                    content_type="text/plain")
    if not _authorized(request, expected):
        response = HttpResponse("bearer token required\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="portolan-metrics"'
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry()), content_type=content_type)
