"""WebSocket routes of the map; ``webapp.asgi`` mounts ``websocket_urlpatterns``."""

from django.urls import path

from webapp.maps.consumers import TopologyConsumer

__all__ = ["SOCKET_PATH", "websocket_urlpatterns"]

SOCKET_PATH = "ws/topology/"

websocket_urlpatterns = [
    path(SOCKET_PATH, TopologyConsumer.as_asgi(), name="topology-socket"),
]
