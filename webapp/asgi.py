"""ASGI entry point for Daphne: HTTP through Django, WebSockets through Channels.

Sockets pass the allowed-hosts Origin check and the session login before any
consumer sees them.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from webapp.maps.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        # The map's bundle is served by the app itself: installs are often
        # offline and on-premises, with no separate web server in front.
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
