"""API token text: made, hashed and read from a header by pure functions.

A token is 32 random bytes, so one SHA-256 is enough to store it: there is
nothing to guess that a slow hash would protect (unlike a password).
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["PREFIX", "bearer_token", "new_token", "token_digest"]

PREFIX = "ptl_"  # says what a leaked string is, for secret scanners and people
SHOWN_CHARS = 8  # of the random part, kept in clear to tell tokens apart
MAX_LENGTH = 200  # a header longer than this is no token of ours


def token_digest(token: str) -> str:
    """The stored form of ``token``.

    >>> token_digest("ptl_abc")[:12]
    'd66a57f6f886'
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> tuple[str, str, str]:
    """(the token, its digest, its shown prefix) for a new token."""
    token = PREFIX + secrets.token_urlsafe(32)
    return token, token_digest(token), token[: len(PREFIX) + SHOWN_CHARS]


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when the
    header is absent or of another scheme (Basic from a proxy is not ours).

    >>> bearer_token("Bearer ptl_x")
    'ptl_x'
    >>> bearer_token("bearer  ptl_x ")
    'ptl_x'
    >>> bearer_token("Basic dXNlcjpwdw==") is None
    True
    >>> bearer_token("Bearer")
    ''
    """
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return rest.strip()
