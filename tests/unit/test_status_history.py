"""When the analyzer adds an entry to its status history (pure: no Redis)."""

from webapp.anomalies.history import StatusHistory

RED = {"container:h:a": {"status": "critical", "reasons": ["exited 1"]}}


class Pipe:
    """Stands in for the analyzer's transaction: counts the entries added."""

    def __init__(self):
        self.entries = 0

    def zadd(self, key, mapping):
        self.entries += len(mapping)

    def zremrangebyscore(self, *args):
        pass

    def expire(self, *args):
        pass


def written(history: StatusHistory, now, statuses, causes=()) -> bool:
    pipe = Pipe()
    assert history.record(now, statuses, list(causes), pipe) == bool(pipe.entries)
    return bool(pipe.entries)


def test_changes_are_written_at_once_and_a_steady_state_once_a_heartbeat():
    h = StatusHistory(None, step=5, heartbeat=60)
    assert written(h, 0, {})  # the first step
    assert not written(h, 1, {})
    assert written(h, 2, RED)  # a status change: at once
    assert written(h, 3, {})  # and back
    assert not written(h, 30, {})
    assert written(h, 63, {})  # a heartbeat: "still the same"


def test_reworded_reasons_are_written_at_most_every_step():
    h = StatusHistory(None, step=5, heartbeat=60)
    written(h, 0, RED)
    reworded = {"container:h:a": {"status": "critical", "reasons": ["exited 2"]}}
    assert not written(h, 1, reworded)
    assert written(h, 5, reworded)
    assert not written(h, 6, reworded)


def test_a_new_likely_cause_is_a_change():
    h = StatusHistory(None, step=5, heartbeat=60)
    written(h, 0, RED)
    assert written(h, 1, RED, [{"target": "container:h:a", "rank": 1}])
