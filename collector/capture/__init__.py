"""Capture files: record what collectors report, replay it anywhere.

``format`` reads and writes the file (docs/capture-format.md) and needs only
the schema; ``recorder`` turns Redis into records (live, or a past window
from history); ``replayer`` writes records back through the collector's own
RedisReporter.
"""
