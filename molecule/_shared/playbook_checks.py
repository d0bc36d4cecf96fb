"""Checks of the playbooks every scenario repeats on its own hosts."""
from testlib import recap_counts, run_playbook


def test_check_mode_on_converged_hosts_changes_nothing():
    result = run_playbook("site.yml", "--check")
    assert result.returncode == 0, result.stdout[-3000:]
    counts = recap_counts(result.stdout)
    assert counts, result.stdout[-3000:]
    for host, count in counts.items():
        assert count["changed"] == 0, f"{host} would change:\n{result.stdout[-5000:]}"
