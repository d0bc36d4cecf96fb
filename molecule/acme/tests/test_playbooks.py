"""Check mode on the converged host (molecule/_shared/playbook_checks.py),
and bad ACME input refused before anything changes."""
import json

import pytest

from playbook_checks import (  # noqa: F401
    assert_refused_before_any_change,
    test_check_mode_on_converged_hosts_changes_nothing,
)
from testlib import run_playbook


@pytest.mark.parametrize(
    "variable, value, reason",
    [
        ("acme_directory_url", "http://acme.example.com/directory", "https"),
        ("acme_domains", ["not a domain"], "qualified"),
        ("acme_email", "nobody", "email"),
        # Each name goes into the root-run install script's systemctl line.
        ("acme_reload_services", ["nginx; touch /tmp/owned"], "systemd service names"),
        ("acme_domains", "api.example.com", "list of fully qualified domain names"),
    ],
)
def test_bad_acme_input_fails_before_any_change_and_names_the_variable(variable, value, reason):
    result = run_playbook("site.yml", "-e", json.dumps({variable: value}))
    assert_refused_before_any_change(result, variable, reason)

