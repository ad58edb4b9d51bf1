"""HTTP routes of the map app (mounted at the site root by ``webapp.urls``)."""

from django.urls import path

from webapp.maps import views

urlpatterns = [
    path("", views.map_view, name="map"),
]
