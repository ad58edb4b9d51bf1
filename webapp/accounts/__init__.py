"""Accounts: roles (viewer, admin), read-only API tokens, login throttling glue."""
