from django.apps import AppConfig


class TopologyConfig(AppConfig):
    name = "webapp.topology"
    label = "topology"
    verbose_name = "Topology graph"
