"""One lock for the whole accounts database, for the start-up steps that must
not run twice at once.

Django's ``migrate`` takes no lock: two web replicas starting together on one
PostgreSQL both create the same tables, and one fails half-way (or both insert
the same permissions). A PostgreSQL session advisory lock serialises them; it
is released when the connection closes, so a killed holder frees it. SQLite
needs none: each file is one process's own (var/), and SQLite locks its file
for every write anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("portolan.accounts.db_lock")

__all__ = ["PREPARE_LOCK_ID", "database_lock"]

# pg_advisory_lock's key, a bigint chosen once: b"portolan" as a number, so
# that another application's advisory locks on a shared server do not collide.
PREPARE_LOCK_ID = int.from_bytes(b"portolan", "big") >> 1


@contextmanager
def database_lock(connection, lock_id: int = PREPARE_LOCK_ID) -> Iterator[bool]:
    """Hold the database-wide lock ``lock_id`` (waiting for another holder);
    yields whether it waited. A no-op on databases other than PostgreSQL."""
    if connection.vendor != "postgresql":
        yield False
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [lock_id])
        waited = not cursor.fetchone()[0]
        if waited:
            log.info("another process holds the start-up lock %d: waiting", lock_id)
            cursor.execute("SELECT pg_advisory_lock(%s)", [lock_id])
    try:
        yield waited
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
