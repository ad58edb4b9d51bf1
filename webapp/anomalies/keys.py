"""Redis key names and target ids of the anomaly analysis, made in one place.

``P`` is the collectors' key prefix (``collector.schema.Keys``):

``P:{anomaly}:status``  HASH target id -> JSON ``{status, own_status, reasons,
                             anomalies, name, type}`` for every target that is
                             not ok; replaced on every analysis step; TTL
``P:{anomaly}:causes``  STR  JSON ``{"ts": ..., "causes": [...]}``, the likely
                             cause ranking, best first; TTL
``P:{anomaly}:events``  STREAM anomaly started / changed / ended, capped length
``P:{anomaly}:lock``    STR  id of the one analyzer allowed to write; TTL
``P:{anomaly}:history`` ZSET the analysis as it changed, for past views
                             (``webapp.anomalies.history``)
``P:{anomaly}:failures`` HASH rule checks that raised: how often, the last
                             error (``webapp.anomalies.failures``); TTL

They share the hash tag ``{anomaly}`` (one Redis Cluster slot): one
transaction writes status, causes, events and failures together.

A target is a node id, or an edge made by ``edge_target`` (node ids are
percent-quoted, so ``>`` never occurs in one).
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.schema import Keys, SchemaError, parse_node_id

__all__ = ["AnalysisKeys", "edge_target", "parse_target"]

_EDGE_SEP = ">"


def edge_target(u: str, v: str) -> str:
    """The target id of edge ``u -> v``.

    >>> edge_target("container:h:a", "container:h:b")
    'container:h:a>container:h:b'
    """
    return f"{u}{_EDGE_SEP}{v}"


def parse_target(target: str) -> tuple[str, str | None]:
    """``(node, None)`` for a node target, ``(u, v)`` for an edge target.

    >>> parse_target(edge_target("container:h:a", "external:1.2.3.0%2F24"))
    ('container:h:a', 'external:1.2.3.0%2F24')
    """
    u, sep, v = target.partition(_EDGE_SEP)
    try:
        parse_node_id(u)
        if sep:
            parse_node_id(v)
    except SchemaError:
        raise SchemaError(f"invalid anomaly target {target!r}") from None
    return (u, v) if sep else (u, None)


@dataclass(slots=True)
class AnalysisKeys:
    """The analysis' Redis keys under one (validated) prefix."""

    prefix: str = "portolan"

    def __post_init__(self):
        self.prefix = Keys(self.prefix).prefix

    @property
    def status(self) -> str:
        return Keys(self.prefix).anomaly("status")

    @property
    def causes(self) -> str:
        return Keys(self.prefix).anomaly("causes")

    @property
    def events(self) -> str:
        return Keys(self.prefix).anomaly("events")

    @property
    def lock(self) -> str:
        return Keys(self.prefix).anomaly("lock")

    @property
    def history(self) -> str:
        return Keys(self.prefix).anomaly("history")

    @property
    def failures(self) -> str:
        return Keys(self.prefix).anomaly("failures")
