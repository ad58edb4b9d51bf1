"""Every live host's records, kept between updates and re-read host by host.

``Fleet.update`` reads only the hosts that reported (and the ones it has not
seen yet), compares what they wrote with what it holds and says what changed:
``structural`` (hosts, containers other than their metrics, addresses, the
set of flows: the levels must be rebuilt), the flows whose counters or rates
changed, and the nodes whose metrics alone changed. Flow totals are re-read
only for flows whose rates changed, unless the host's flow hash grew (a new
flow or counter), when the whole hash is read.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from dataclasses import dataclass, field

import redis

from collector.schema import Keys, container_node_id, host_node_id
from webapp.builder.fields import HostFields
from webapp.topology.store import (
    HostKeys,
    TopologyState,
    parse_containers,
    parse_host,
    parse_metrics,
    read_flow_fields,
    read_hosts,
)

__all__ = ["Fleet", "FleetChange"]

# Fields a record may change without changing the map's shape (a host's
# processes name process nodes: not volatile there).
_VOLATILE = {"ContainerRecord": ("metrics", "processes"), "HostRecord": ("metrics",)}


@dataclass(slots=True)
class FleetChange:
    """What one update changed."""

    structural: bool = False
    flows: set = field(default_factory=set)  # (host id, FlowKey)
    nodes: set = field(default_factory=set)  # node ids whose metrics changed
    hosts_read: int = 0


def _shape(record) -> tuple:
    """A record without its volatile fields: equal shapes draw the same map."""
    return _shape_of(type(record))(record)


@functools.cache
def _shape_of(cls):
    """The fields of ``cls`` that are not volatile, read in one C call (every
    record of a reporting host is compared each second when metrics move)."""
    volatile = _VOLATILE[cls.__name__]
    return operator.attrgetter(*(f.name for f in dataclasses.fields(cls)
                                 if f.name not in volatile), "__class__")


class Fleet:
    """The merged state of every live host (``state``), updated in place."""

    def __init__(self):
        self.state = TopologyState()
        self.raw: dict[str, HostKeys] = {}
        # host id -> FlowKey -> the names of its fields in the host's flow hash
        self.fields: dict[str, dict] = {}
        # host id -> those names, as read (an unchanged hash read whole again
        # needs them not regrouped)
        self.names: dict[str, set] = {}
        # host id -> its field names, parsed once
        self.parsers: dict[str, HostFields] = {}
        # host id -> the FlowKeys it has rates for (the state's keys, by host)
        self.rated: dict[str, set] = {}

    def update(self, client: redis.Redis, keys: Keys, reported,
               live: dict[str, float]) -> FleetChange:
        """Re-read the hosts in ``reported`` (and new ones); drop hosts not live."""
        change = FleetChange()
        for host_id in set(self.raw) - set(live):
            self._forget(host_id)
            change.structural = True
        self.state.last_seen.update(live)
        to_read = [h for h in live if h in reported or h not in self.raw]
        if not to_read:
            return change
        change.hosts_read = len(to_read)
        parts = read_hosts(client, keys, to_read)
        wanted = {}
        for host_id, new in parts.items():
            old = self.raw.get(host_id)
            self.raw[host_id] = new  # (its ids resolve the fields read next)
            self._update_records(host_id, old, new, change)
            changed_rates = self._update_rates(host_id, new.rates)
            known = self.fields.get(host_id)
            # A rate for a flow the hash did not hold is a new flow even where
            # HLEN stayed equal (a flushed Redis written again, a replay).
            names = None
            if (old is not None and known is not None
                    and new.flow_fields == old.flow_fields):
                names = []
                for key in changed_rates:
                    held = known.get(key)
                    if held is None:
                        names = None
                        break
                    names += held
            if names is None:
                wanted[host_id] = None
            elif names:
                # Most of the hash (every flow moved): read it whole, which
                # sends no names and comes back as a dict.
                wanted[host_id] = (None if 2 * len(names) > new.flow_fields
                                   else names)
                change.flows.update((host_id, key) for key in changed_rates)
        wanted = {h: f for h, f in wanted.items() if f is None or f}
        if wanted:
            got = read_flow_fields(client, keys, wanted)
            # A field asked for and gone: the hash was replaced under us, so
            # the flows it held are not known any more; read it whole.
            again = {h: None for h, raw in got.items()
                     if wanted[h] is not None and len(raw) < len(wanted[h])}
            if again:
                got.update(read_flow_fields(client, keys, again))
            for host_id, raw in got.items():
                self._update_flows(host_id, raw, host_id in again
                                   or wanted[host_id] is None, change)
        return change

    def _forget(self, host_id: str) -> None:
        s = self.state
        for key in self.fields.get(host_id, ()):
            s.flows.pop((host_id, key), None)
        for key in self.rated.get(host_id, ()):
            s.rates.pop((host_id, key), None)
        for part in (self.raw, self.fields, self.names, self.parsers, self.rated,
                     s.hosts,
                     s.last_seen, s.containers, s.addrs):
            part.pop(host_id, None)

    def _update_records(self, host_id: str, old: HostKeys | None, new: HostKeys,
                        change: FleetChange) -> None:
        s = self.state
        if old is None or new.host != old.host:
            record = parse_host(host_id, new.host)
            before = s.hosts.get(host_id)
            if before is None or _shape(before) != _shape(record):
                change.structural = True
            elif before.metrics != record.metrics:
                change.nodes.add(host_node_id(host_id))
            s.hosts[host_id] = record
        if old is None or new.addrs != old.addrs:
            change.structural = True
            s.addrs[host_id] = {a.decode(): t.decode() for a, t in new.addrs.items()}
        if old is None or new.containers.keys() != old.containers.keys():
            change.structural = True
            s.containers[host_id] = parse_containers(host_id, new.containers,
                                                     new.metrics)
            return
        changed = {}
        if new.containers != old.containers:
            changed = {cid: text for cid, text in new.containers.items()
                       if old.containers.get(cid) != text}
            records = s.containers[host_id] = dict(s.containers.get(host_id, {}))
            for cid, record in parse_containers(host_id, changed,
                                                new.metrics).items():
                previous = records.get(cid)
                if previous is None or _shape(previous) != _shape(record):
                    change.structural = True
                else:
                    change.nodes.add(container_node_id(host_id, cid))
                records[cid] = record
        if new.metrics != old.metrics:
            # Metrics alone (P:metrics): the record stands, its metrics are
            # replaced (a new dict: the levels compare against the old one).
            records = s.containers.get(host_id, {})
            for cid in new.containers.keys() - changed.keys():
                text = new.metrics.get(cid)
                if text == old.metrics.get(cid):
                    continue
                record = records.get(cid.decode(errors="replace"))
                if record is None:
                    continue  # its record is malformed (logged)
                record.metrics = ({} if text is None
                                  else parse_metrics(host_id, cid, text))
                change.nodes.add(container_node_id(host_id, record.id))

    def _parser(self, host_id: str) -> HostFields:
        """The host's parsed field names, for the containers it has now."""
        containers = self.state.containers.get(host_id, {})
        parser = self.parsers.get(host_id)
        raw = self.raw.get(host_id)
        ids = raw.ids if raw else {}
        if (parser is None or parser.containers != containers.keys()
                or parser.ids != ids
                or len(parser.parsed) > 2 * (raw.flow_fields if raw else 0) + 1024):
            # New containers (or short ids) resolve short ids anew; flows
            # come and go.
            parser = self.parsers[host_id] = HostFields(host_id, containers, ids)
        return parser

    def _update_rates(self, host_id: str, raw: dict[bytes, bytes]) -> set:
        """Replace the host's rates; the flows whose rates or totals changed
        (a rate is written only for a flow that had traffic, so every flow
        with one has new totals, even at a steady rate)."""
        rates = self.state.rates
        new = self._parser(host_id).flows(raw, float)
        changed = set(new)
        for key, values in new.items():
            rates[(host_id, key)] = values
        for key in self.rated.get(host_id, set()) - changed:
            rates.pop((host_id, key), None)  # no traffic: its rates are gone
            changed.add(key)
        self.rated[host_id] = set(new)
        return changed

    def _update_flows(self, host_id: str, raw: dict[bytes, bytes], whole: bool,
                      change: FleetChange) -> None:
        s = self.state
        parser = self._parser(host_id)
        parsed = parser.flows(raw, int)
        if whole:
            known = self.fields.get(host_id, {})
            if known.keys() != parsed.keys():
                change.structural = True
                for key in known.keys() - parsed.keys():
                    del s.flows[(host_id, key)]
            if raw.keys() != self.names.get(host_id):
                self.fields[host_id] = parser.names(raw)
                self.names[host_id] = set(raw)
        flows = s.flows
        for key, counters in parsed.items():
            flow = (host_id, key)
            if flows.get(flow) != counters:
                flows[flow] = counters
                change.flows.add(flow)
