"""Serialisers for graph formats other than node-link JSON."""

from __future__ import annotations

import json

import networkx as nx


def flat_attrs(G: nx.DiGraph) -> nx.DiGraph:
    """A copy whose attributes are scalars (GraphML takes no lists or dicts)."""
    H = nx.DiGraph()

    def flat(data):
        return {
            k: (json.dumps(v, sort_keys=True) if isinstance(v, list | dict) else v)
            for k, v in data.items()
            if v is not None
        }

    for n, data in G.nodes(data=True):
        H.add_node(n, **flat(data))
    for u, v, data in G.edges(data=True):
        H.add_edge(u, v, **flat(data))
    return H


def _dot_quote(text) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace(
        "\n", "\\n") + '"'


def to_dot(G: nx.DiGraph) -> str:
    """Graphviz DOT text, with every id and label quoted."""
    lines = ["digraph portolan {"]
    for n, data in G.nodes(data=True):
        lines.append(
            f"  {_dot_quote(n)} [label={_dot_quote(data.get('name', n))}, "
            f"type={_dot_quote(data.get('type', ''))}, "
            f"status={_dot_quote(data.get('status', ''))}];"
        )
    for u, v, data in G.edges(data=True):
        lines.append(
            f"  {_dot_quote(u)} -> {_dot_quote(v)} "
            f"[connections={int(data.get('connections', 0))}, "
            f"failed={int(data.get('failed', 0))}];"
        )
    lines.append("}")
    return "\n".join(lines)
