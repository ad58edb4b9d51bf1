from django.apps import AppConfig


class MapsConfig(AppConfig):
    name = "webapp.maps"
    label = "maps"
    verbose_name = "Live map"
