"""Checks of the playbooks every scenario repeats on its own hosts."""
from testlib import recap_counts, run_playbook


def test_check_mode_on_converged_hosts_changes_nothing():
    result = run_playbook("site.yml", "--check")
    assert result.returncode == 0, result.stdout[-3000:]
    counts = recap_counts(result.stdout)
    assert counts, result.stdout[-3000:]
    for host, count in counts.items():
        assert count["changed"] == 0, f"{host} would change:\n{result.stdout[-5000:]}"


def assert_refused_before_any_change(result, variable, reason):
    """A site.yml run that bad input for `variable` stopped: it failed, said
    which variable and why, changed nothing and never reached the roles."""
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert variable in output
    assert reason in output
    counts = recap_counts(result.stdout)
    assert counts and all(count["changed"] == 0 for count in counts.values()), output[-3000:]
    # Stopped in the pre-flight play: no role's own tasks ran.
    assert "TASK [base : Install common packages]" not in output
