"""Check mode on the converged host (molecule/_shared/playbook_checks.py),
and bad ACME input refused before anything changes."""
import json

import pytest

from playbook_checks import test_check_mode_on_converged_hosts_changes_nothing  # noqa: F401
from testlib import recap_counts, run_playbook


@pytest.mark.parametrize(
    "variable, value, reason",
    [
        ("acme_directory_url", "http://acme.example.com/directory", "https"),
        ("acme_domains", ["not a domain"], "qualified"),
        ("acme_email", "nobody", "email"),
    ],
)
def test_bad_acme_input_fails_before_any_change_and_names_the_variable(variable, value, reason):
    result = run_playbook("site.yml", "-e", json.dumps({variable: value}))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert variable in output
    assert reason in output
    counts = recap_counts(result.stdout)
    assert counts and all(count["changed"] == 0 for count in counts.values()), output[-3000:]
    # Stopped in the pre-flight play: no role's own tasks ran.
    assert "TASK [base : Install common packages]" not in output

