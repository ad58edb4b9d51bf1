"""``manage.py analyze`` with one more rule, whose check always raises: a real
analyzer run (settings, Redis, lock, publishing) in which a rule fails.

    python -m tests.failing_rule [analyze's options]

Used by the tests that show a failing rule to users (/healthz, the status bar).
"""

from __future__ import annotations

import os
import sys

CHECK = "always_fails"
RULE = "always_fails"
# Two lines and markup: shown as one line, and as text, never as HTML.
ERROR = "broken on purpose <img src=x onerror=alert(1)>\nsecond line"
ERROR_LINE = f"RuntimeError: {' '.join(ERROR.split())}"


def main(argv: list[str]) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from webapp.anomalies.rules import rule

    @rule(RULE)
    def always_fails(G, ctx):
        raise RuntimeError(ERROR)

    call_command("analyze", *argv)


if __name__ == "__main__":
    main(sys.argv[1:])
