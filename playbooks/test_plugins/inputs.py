"""Jinja tests for the shape of the roles' inputs.

    app_allowed_hosts is list_of_strings

A list written as one value (`app_allowed_hosts: api.example.com` in YAML,
or `-e app_allowed_hosts=api.example.com`) arrives as a string, and Jinja
walks a string character by character: every letter passes a per-item check
such as a host-name pattern, and `join(",")` then spells the name out
letter by letter into the host's configuration. argument_specs' `type: list`
does not catch it either: it splits a string on commas for its own check and
leaves the variable a string.

Loaded like network.py, from beside the playbooks and through ansible.cfg.
"""
from collections.abc import Sequence


def list_of_strings(value):
    """A list (or tuple) whose every item is text: not a string, a mapping or
    a number, and no item a number, list or mapping. May be empty."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return False
    return all(isinstance(item, str) for item in value)


class TestModule:
    def tests(self):
        return {"list_of_strings": list_of_strings}
