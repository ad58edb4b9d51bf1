"""Who may read the topology: a logged-in viewer, or a read-only API token.

Only views wrapped in ``topology_reader`` look at ``Authorization: Bearer``:
the pages, the token pages and the admin site never do, so a token opens
nothing but the read APIs.
"""

from __future__ import annotations

from functools import wraps

from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.http import JsonResponse

from webapp.accounts.models import ApiToken
from webapp.accounts.tokens import bearer_token

__all__ = ["TOPOLOGY_PERMISSION", "TopologyPermissionValidator", "topology_reader"]

TOPOLOGY_PERMISSION = "accounts.view_topology"
READ_METHODS = ("GET", "HEAD")


def _refused(status: int, message: str, challenge: str | None = None):
    response = JsonResponse({"error": message}, status=status)
    if challenge is not None:
        response["WWW-Authenticate"] = challenge
    return response


def topology_reader(view):
    """Let ``view`` run for a session with the topology permission or a valid
    token (GET only); 401 without either, 403 without the permission."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        token = bearer_token(request.headers.get("Authorization"))
        if token is not None:
            user = ApiToken.user_for(token)
            if user is None:
                return _refused(401, "invalid or revoked API token",
                                'Bearer error="invalid_token"')
            if request.method not in READ_METHODS:
                return _refused(403, "API tokens are read-only")
            request.user = user
            request.api_token = True
        elif not request.user.is_authenticated:
            return _refused(401, "authentication required", "Bearer")
        if not request.user.has_perm(TOPOLOGY_PERMISSION):
            return _refused(403, "your role does not include the map")
        return view(request, *args, **kwargs)

    return wrapper


class TopologyPermissionValidator:
    """Refuses a WebSocket whose logged-in user lacks the topology permission
    (anonymous sockets pass on: the consumer refuses them with its own code)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is not None and user.is_authenticated and not await (
                database_sync_to_async(user.has_perm)(TOPOLOGY_PERMISSION)):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
