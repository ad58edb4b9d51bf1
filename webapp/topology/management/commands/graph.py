"""``manage.py graph``: print the live graph at one zoom level."""

import json

import networkx as nx
from django.core.management.base import BaseCommand, CommandError

from collector.redis_client import REDIS_ERRORS
from webapp.topology import export, service


class Command(BaseCommand):
    help = "Print the topology graph as node-link JSON, GraphML or DOT."

    def add_arguments(self, parser):
        parser.add_argument("--level", choices=service.LEVELS, default="container")
        parser.add_argument("--format", choices=("json", "graphml", "dot"),
                            default="json")
        parser.add_argument("--at", help="ISO 8601 time: the graph as it was then")

    def handle(self, *args, **opts):
        try:
            at = service.parse_time(opts["at"]) if opts["at"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        try:
            G = service.current_graph(opts["level"], at)
        except REDIS_ERRORS as exc:
            raise CommandError(f"Redis unreachable: {exc}") from None
        if opts["format"] == "json":
            self.stdout.write(json.dumps(service.graph_payload(G), indent=2,
                                         sort_keys=True))
        elif opts["format"] == "graphml":
            self.stdout.write("\n".join(nx.generate_graphml(export.flat_attrs(G))))
        else:
            self.stdout.write(export.to_dot(G))
