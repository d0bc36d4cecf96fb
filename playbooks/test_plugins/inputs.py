"""Jinja tests for the shape of the roles' inputs.

    app_allowed_hosts is list_of_strings
    app_root is absolute_path
    app_jwt_keyring_file is absolute_file_path
    postgresql_app_user is sql_name

A list written as one value (`app_allowed_hosts: api.example.com` in YAML,
or `-e app_allowed_hosts=api.example.com`) arrives as a string, and Jinja
walks a string character by character: every letter passes a per-item check
such as a host-name pattern, and `join(",")` then spells the name out
letter by letter into the host's configuration. argument_specs' `type: list`
does not catch it either: it splits a string on commas for its own check and
leaves the variable a string.

Paths on the hosts go unquoted into systemd units (ReadWritePaths= splits
at spaces) and scripts, so a path with whitespace is refused too.

The app's database and role are PostgreSQL names the roles create, own and
lock down (NOSUPERUSER, CONNECT revoked from others): one of PostgreSQL's
own (the `postgres` superuser or database, a template database) would have
the run take the cluster's administration apart, and a reserved one
(`pg_...`, `public`) fails mid-run. Both are refused up front.

Loaded like network.py, from beside the playbooks and through ansible.cfg.
"""
import re
from collections.abc import Sequence

SQL_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# What initdb creates, and what CREATE ROLE refuses as reserved.
POSTGRESQL_OWN_NAMES = frozenset({
    "postgres", "template0", "template1",
    "public", "none", "current_role", "current_user", "session_user",
})


def list_of_strings(value):
    """A list (or tuple) whose every item is text: not a string, a mapping or
    a number, and no item a number, list or mapping. May be empty."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return False
    return all(isinstance(item, str) for item in value)


def absolute_path(value):
    """Text starting with a slash, with no whitespace in it."""
    return isinstance(value, str) and value.startswith("/") and not any(c.isspace() for c in value)


def absolute_file_path(value):
    """An absolute path that can name a file: not "/", not ending in a slash."""
    return absolute_path(value) and len(value) > 1 and not value.endswith("/")


def sql_name(value):
    """A lower-case SQL identifier (no quoting needed) that PostgreSQL
    neither creates itself nor reserves."""
    return (
        isinstance(value, str)
        and SQL_NAME.fullmatch(value) is not None
        and not value.startswith("pg_")
        and value not in POSTGRESQL_OWN_NAMES
    )


class TestModule:
    def tests(self):
        return {
            "list_of_strings": list_of_strings,
            "absolute_path": absolute_path,
            "absolute_file_path": absolute_file_path,
            "sql_name": sql_name,
        }
