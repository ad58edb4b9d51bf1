"""The map socket's diff: pure functions over node-link graphs."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webapp.maps.diff import (
    DIFF_FIELDS,
    apply_diff,
    encode_diff,
    encode_snapshot,
    graph_diff,
    is_empty,
)


def graph(nodes=(), links=()):
    return {
        "directed": True,
        "multigraph": False,
        "graph": {},
        "nodes": list(nodes),
        "links": list(links),
    }


def node(node_id, **attrs):
    return {"id": node_id, "type": "container", "status": "ok", **attrs}


def link(source, target, **attrs):
    return {"source": source, "target": target, "connections": 1, **attrs}


@pytest.mark.parametrize(
    ("old", "new", "field", "expected"),
    [
        (graph(), graph([node("a")]), "added_nodes", [node("a")]),
        (graph([node("a")]), graph(), "removed_nodes", ["a"]),
        (
            graph([node("a")]),
            graph([node("a", status="critical")]),
            "changed_nodes",
            [node("a", status="critical")],
        ),
        (
            graph([node("a"), node("b")]),
            graph([node("a"), node("b")], [link("a", "b")]),
            "added_edges",
            [link("a", "b")],
        ),
        (
            graph([node("a"), node("b")], [link("a", "b")]),
            graph([node("a"), node("b")]),
            "removed_edges",
            [["a", "b"]],
        ),
        (
            graph([node("a"), node("b")], [link("a", "b")]),
            graph([node("a"), node("b")], [link("a", "b", connections=7)]),
            "changed_edges",
            [link("a", "b", connections=7)],
        ),
    ],
    ids=[
        "add-node",
        "remove-node",
        "change-node",
        "add-edge",
        "remove-edge",
        "change-edge",
    ],
)
def test_each_kind_of_change_lands_in_its_field(old, new, field, expected):
    diff = graph_diff(old, new)
    assert diff["type"] == "diff"
    assert diff[field] == expected
    assert all(not diff[other] for other in DIFF_FIELDS if other != field)


def test_equal_graphs_give_an_empty_diff():
    g = graph([node("a"), node("b")], [link("a", "b")])
    assert is_empty(graph_diff(g, g))


def test_direction_matters_for_edges():
    old = graph([node("a"), node("b")], [link("a", "b")])
    new = graph([node("a"), node("b")], [link("b", "a")])
    diff = graph_diff(old, new)
    assert diff["removed_edges"] == [["a", "b"]]
    assert [(e["source"], e["target"]) for e in diff["added_edges"]] == [("b", "a")]


def test_hostile_ids_are_plain_data():
    evil = "container:h:%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"
    diff = graph_diff(graph(), graph([node(evil, name="<img src=x onerror=alert(1)>")]))
    assert diff["added_nodes"][0]["name"] == "<img src=x onerror=alert(1)>"


ids = st.sampled_from(["a", "b", "c", "d", "e"])
statuses = st.sampled_from(["ok", "warning", "critical"])
graphs = st.builds(
    lambda ns, es: graph(
        [node(n, status=s) for n, s in sorted(ns.items())],
        [
            link(u, v, connections=c)
            for (u, v), c in sorted(es.items())
            if u in ns and v in ns
        ],
    ),
    st.dictionaries(ids, statuses),
    st.dictionaries(st.tuples(ids, ids), st.integers(0, 5)),
)


@given(graphs, graphs)
def test_applying_the_diff_gives_the_new_graph(old, new):
    diff = graph_diff(old, new)
    result = apply_diff(old, diff)
    assert result["nodes"] == sorted(new["nodes"], key=lambda n: n["id"])
    assert result["links"] == sorted(
        new["links"], key=lambda e: (e["source"], e["target"])
    )
    assert is_empty(graph_diff(result, new))


# Items of very different sizes (a long name here and there) and a few past
# orjson's 64-bit ints, so a run's guessed length often does not fit and the
# standard library's fallback is taken.
sized_nodes = st.lists(
    st.builds(
        lambda i, pad, big: node(f"n{i}", name="x" * pad,
                                 **({"bytes": 2**70 + i} if big else {})),
        st.integers(0, 10**6),
        st.integers(0, 300),
        st.integers(0, 9).map(lambda d: d == 0),
    ),
    max_size=60,
    unique_by=lambda n: n["id"],
)


@given(sized_nodes, st.integers(20, 2000))
def test_snapshot_parts_stay_under_the_limit_and_join_to_the_graph(nodes, limit):
    payload = graph(nodes, [link(n["id"], n["id"]) for n in nodes[:5]])
    parts = [json.loads(t) for t in encode_snapshot("container", payload, limit)]
    joined_nodes = [n for p in parts for n in p["graph"]["nodes"]]
    joined_links = [e for p in parts for e in p["graph"]["links"]]
    assert joined_nodes == nodes
    assert joined_links == payload["links"]
    assert [(p["part"], p["parts"]) for p in parts] == [
        (i, len(parts)) for i in range(len(parts))]
    for p in parts:
        items = p["graph"]["nodes"] + p["graph"]["links"]
        body = sum(len(json.dumps(i, separators=(",", ":"))) + 1 for i in items)
        assert body <= limit or len(items) == 1


@given(sized_nodes, st.integers(20, 2000))
def test_diff_messages_applied_in_order_equal_the_whole(nodes, limit):
    old = graph(nodes[: len(nodes) // 2])
    new = graph(nodes, [link(n["id"], n["id"]) for n in nodes[::3]])
    diff = graph_diff(old, new)
    result = old
    for text in encode_diff(diff, limit):
        result = apply_diff(result, json.loads(text))
    assert result["nodes"] == sorted(new["nodes"], key=lambda n: n["id"])
    assert result["links"] == sorted(
        new["links"], key=lambda e: (e["source"], e["target"]))


# Nodes with metrics, some figures moving, some going away, some nodes
# without metrics or with something else under the name (finite: a message
# is JSON, where orjson writes an infinity as null).
metric_values = st.one_of(st.integers(-5, 5), st.none(),
                          st.floats(allow_nan=False, allow_infinity=False))
metric_dicts = st.dictionaries(st.sampled_from(["cpu", "mem", "pids", "rx"]),
                               metric_values, max_size=4)
metric_nodes = st.dictionaries(
    ids, st.one_of(metric_dicts, st.none(), st.just("n/a")), max_size=5)


def metric_graph(metrics: dict) -> dict:
    return graph([node(n, **({} if m is None else {"metrics": m}))
                  for n, m in sorted(metrics.items())])


@given(metric_nodes, metric_nodes)
def test_a_partial_diff_with_metrics_applies_to_the_new_graph(old, new):
    before, after = metric_graph(old), metric_graph(new)
    diff = graph_diff(before, after, partial=True)
    assert apply_diff(before, diff)["nodes"] == after["nodes"]
    for text in encode_diff(diff, 60):
        before = apply_diff(before, json.loads(text))
    assert before["nodes"] == after["nodes"]


def test_only_the_metrics_that_moved_are_sent():
    old = graph([node("a", metrics={"cpu": 1, "mem": 4096, "pids": 3})])
    new = graph([node("a", metrics={"cpu": 2, "mem": 4096, "pids": 3})])
    diff = graph_diff(old, new, partial=True)
    assert diff["updated_metrics"] == [{"id": "a", "metrics": {"cpu": 2}}]
    assert not diff["updated_nodes"] and not diff["changed_nodes"]
    # A figure that went away: the node's metrics whole, as a key of the node.
    gone = graph([node("a", metrics={"cpu": 2}, status="critical")])
    diff = graph_diff(old, gone, partial=True)
    assert diff["updated_nodes"] == [
        {"id": "a", "status": "critical", "metrics": {"cpu": 2}}]
    assert not diff["updated_metrics"]
