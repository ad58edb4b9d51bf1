"""ASGI entry point for Daphne: HTTP through Django, WebSockets through Channels.

Sockets pass the allowed-hosts Origin check, the same-origin check, the
session login and the role's map permission before any consumer sees them.
"""

import os
from urllib.parse import urlsplit

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import (  # noqa: E402
    AllowedHostsOriginValidator,
    WebsocketDenier,
)
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.http.request import is_same_domain  # noqa: E402

from webapp.accounts.access import TopologyPermissionValidator  # noqa: E402
from webapp.maps.routing import websocket_urlpatterns  # noqa: E402


def _header(scope, name: bytes) -> str | None:
    """The header's value if it was sent exactly once, else None."""
    values = [v for k, v in scope.get("headers", ()) if k == name]
    return values[0].decode("latin-1") if len(values) == 1 else None


def origin_allowed(scope) -> bool:
    """Whether the socket's Origin is this very site or a CSRF-trusted origin.

    Mirrors Django's CSRF Origin check. Channels' allowed-hosts check compares
    host names only, so any other port or scheme on the same name (a dev
    server, Grafana) could open the map with the user's cookie.
    """
    origin = _header(scope, b"origin")
    if not origin:
        return False
    host = _header(scope, b"host")
    # Daphne sets no scheme (ASGI's default: "ws"), even over TLS, as does a
    # TLS proxy in front: https pages there need CSRF_TRUSTED_ORIGINS.
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    if host and origin.lower() == f"{scheme}://{host}".lower():
        return True
    # Behind a reverse proxy the Host (and scheme) may be the proxy's own.
    trusted = getattr(settings, "CSRF_TRUSTED_ORIGINS", ())
    if origin in trusted:
        return True
    try:
        parsed = urlsplit(origin)
    except ValueError:
        return False
    return any(
        "*" in t
        and urlsplit(t).scheme == parsed.scheme
        and is_same_domain(parsed.netloc, urlsplit(t).netloc.lstrip("*"))
        for t in trusted
    )


class SameOriginValidator:
    """Refuses a WebSocket whose Origin fails ``origin_allowed``."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if not origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # The map's bundle is served by the app itself: installs are often
        # offline and on-premises, with no separate web server in front.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        # The allowed-hosts check stays: nothing else checks the Host here.
        "websocket": AllowedHostsOriginValidator(
            SameOriginValidator(AuthMiddlewareStack(
                TopologyPermissionValidator(URLRouter(websocket_urlpatterns))))
        ),
    }
)
