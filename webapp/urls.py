"""URL map: login, the health check, /metrics, the graph API and the map pages."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from webapp.metrics import views as metrics_views
from webapp.topology import views as topology_views

urlpatterns = [
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="registration/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", topology_views.healthz, name="healthz"),
    path("metrics", metrics_views.metrics, name="metrics"),
    path("api/graph/", topology_views.api_graph, name="api-graph"),
    path("api/node/", topology_views.api_node, name="api-node"),
    path("", include("webapp.maps.urls")),
]
