"""A host's live flow fields, parsed once and remembered, for the builder.

Every report rewrites a host's rates hash and moves its flow totals, but the
field names stay the same from one second to the next: at 50,000 flows whose
counters all move, parsing each name again every second was most of the
builder's reading. ``HostFields`` parses a name the first time it is seen,
with the format's one parser (``collector.flow_fields``, which
``webapp.topology.store.parse_flows`` uses too), and after that only looks it
up. Short container
ids resolve against the host's ``ids`` hash and containers, so a host whose
set of containers or short ids changes starts a new ``HostFields``.
"""

from __future__ import annotations

import logging

from collector.flow_fields import host_flow_fields
from collector.schema import SchemaError

__all__ = ["HostFields"]

log = logging.getLogger("portolan.builder")

_SKIPPED = ()  # a field that does not parse (logged once, when first seen)


class HostFields:
    """One host's flow field names: field -> (FlowKey, counter)."""

    __slots__ = ("host_id", "containers", "ids", "parsed", "merging", "_fields",
                 "_targets")

    def __init__(self, host_id: str, containers, ids=None):
        self.host_id = host_id
        self.containers = frozenset(containers)  # the ids they resolve against
        self.ids = ids or {}  # the host's ids hash: short id -> whole id
        self.parsed: dict[bytes, tuple] = {}
        # Two names of one flow's counter seen (a canonical field beside its
        # short form, or a field that does not parse): summed field by field.
        self.merging = False
        self._fields = None
        self._targets: set = set()

    def flows(self, raw: dict[bytes, bytes], kind=int) -> dict:
        """FlowKey -> counter -> value, as ``parse_flows(raw, kind)`` gives."""
        parsed = self.parsed
        # Looked up and converted in C (map): at 50,000 flows whose counters
        # all move, a Python call per field was most of this.
        entries = list(map(parsed.get, raw))
        if None in entries:
            for i, name in enumerate(raw):
                if entries[i] is None:
                    entries[i] = parsed[name] = self._parse(name)
        if self.merging:
            return self._merged(raw, entries, kind)
        try:
            values = list(map(kind, raw.values()))
        except (ValueError, TypeError):
            return self._merged(raw, entries, kind)  # logs the bad ones
        out: dict = {}
        for (key, counter), value in zip(entries, values, strict=True):
            counters = out.get(key)
            if counters is None:
                out[key] = {counter: value}
            else:
                counters[counter] = value
        return out

    def _merged(self, raw: dict[bytes, bytes], entries: list, kind) -> dict:
        """``flows`` field by field: bad fields skipped, a counter's two
        versions summed."""
        out: dict = {}
        for entry, value in zip(entries, raw.values(), strict=True):
            if entry is _SKIPPED:
                continue
            key, counter = entry
            try:
                value = kind(value)
            except (ValueError, TypeError) as exc:
                log.warning("host %s: skipping flow field: %s", self.host_id, exc)
                continue
            counters = out.get(key)
            if counters is None:
                out[key] = {counter: value}
            elif kind is int and counter in counters:
                counters[counter] += value  # two versions' fields of one counter
            else:
                counters[counter] = value
        return out

    def names(self, raw) -> dict:
        """FlowKey -> the names of its fields in ``raw`` (str, for HMGET)."""
        out: dict = {}
        for name in raw:
            entry = self.parsed.get(name)
            if entry is None:
                entry = self.parsed[name] = self._parse(name)
            if entry is not _SKIPPED:
                out.setdefault(entry[0], []).append(name.decode())
        return {key: tuple(names) for key, names in out.items()}

    def _parse(self, name: bytes) -> tuple:
        # The format's own parser, made once per host (``parse_flows`` would
        # look it up again for each name: most of a first full read).
        if self._fields is None:
            self._fields = host_flow_fields(self.host_id, self.containers,
                                            self.ids)
        try:
            entry = self._fields.parse(name.decode())
        except (SchemaError, UnicodeDecodeError) as exc:
            log.warning("host %s: skipping flow field: %s", self.host_id, exc)
            self.merging = True
            return _SKIPPED
        if entry in self._targets:
            self.merging = True
        self._targets.add(entry)
        return entry
