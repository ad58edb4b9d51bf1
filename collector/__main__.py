"""``python -m collector``: run this host's collector (see collector.runner)."""

from collector.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
