"""The map page: a shell that the front-end bundle fills from the socket."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.maps.routing import SOCKET_PATH
from webapp.topology.service import LEVELS

__all__ = ["DEFAULT_LEVEL", "map_view"]

# Zoomed out: hosts first, as on a map; zooming in opens them.
DEFAULT_LEVEL = "host"


@require_GET
@login_required
@permission_required("accounts.view_topology", raise_exception=True)
def map_view(request):
    """The live map at ``?level=`` (an unknown level falls back to the default)."""
    level = request.GET.get("level", DEFAULT_LEVEL)
    if level not in LEVELS:
        level = DEFAULT_LEVEL
    config = {"level": level, "levels": list(LEVELS), "socketPath": f"/{SOCKET_PATH}"}
    return render(
        request,
        "maps/map.html",
        {"config": config, "level": level, "levels": _level_links(level)},
    )


def _level_links(current: str) -> list[dict]:
    """The level switcher's entries, coarsest first."""
    return [{"name": name, "current": name == current} for name in reversed(LEVELS)]
