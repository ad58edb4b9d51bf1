"""Telling every web worker at once that a login may have ended.

A map socket checks its login only now and then (``webapp.maps.consumers``);
an open one on another Daphne worker would stream on after a password change,
a deactivation, a deletion or a logout until its next check. Each of these
sends one message to the Channels group ``GROUP``, which every worker with open
sockets has joined (``webapp.maps.login_watch``): the user's sockets there
check their login at once, and those of a session logged out close. The
message carries the user's id and a digest of the session logged out, never
the session key itself. Where the channel layer is unreachable the message is
lost, logged, and the sockets' own checks end them later; the change itself
never fails for it.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger("portolan.accounts.ended_logins")

__all__ = ["GROUP", "MESSAGE_TYPE", "announce_ended_login", "session_digest"]

GROUP = "accounts.ended-logins"
MESSAGE_TYPE = "accounts.login_ended"


def session_digest(session_key: str) -> str:
    """What names a session in a message: its key is a login's secret.

    >>> session_digest("abc")[:12]
    'ba7816bf8f01'
    """
    return hashlib.sha256(session_key.encode()).hexdigest()


def announce_ended_login(user_pk, session_key: str | None = None) -> None:
    """Tell every worker, once the change is committed (a worker checking
    before would still find the login valid), that ``user_pk``'s login may
    have ended, or (``session_key``) that this session of theirs has."""
    message = {"type": MESSAGE_TYPE, "user": str(user_pk),
               "session": session_digest(session_key) if session_key else None}
    transaction.on_commit(partial(_send, message))


def _send(message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(GROUP, message)
    except Exception as exc:  # noqa: BLE001 - a login change must not fail for it
        log.warning("cannot tell the web workers that a login ended "
                    "(their sockets check it within 30 s): %s", exc)
