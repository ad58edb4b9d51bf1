"""URL map: login, account and admin pages, the health check, /metrics, the graph
API and the map pages."""

from django.contrib import admin
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
    path("account/", include("webapp.accounts.urls")),
    # Users, everyone's tokens and the login log, for admins (session only).
    path("admin/", admin.site.urls),
    path("healthz", topology_views.healthz, name="healthz"),
    path("metrics", metrics_views.metrics, name="metrics"),
    path("api/graph/", topology_views.api_graph, name="api-graph"),
    path("api/node/", topology_views.api_node, name="api-node"),
    path("api/rule-failures/", topology_views.api_rule_failures,
         name="api-rule-failures"),
    path("", include("webapp.maps.urls")),
]
