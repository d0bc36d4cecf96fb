"""The playbooks across hosts: check mode on the converged hosts
(molecule/_shared/playbook_checks.py), and one host's bad input stopping
every host."""
import tempfile

from conftest import HOSTS
from playbook_checks import (  # noqa: F401
    assert_refused_before_any_change,
    test_check_mode_on_converged_hosts_changes_nothing,
)
from testlib import run_playbook


def test_one_hosts_bad_input_stops_every_host_before_any_change():
    # A second inventory source that gives app2 alone a database password
    # other than the one the database server makes, which is checked
    # against that other host's inventory.
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as inventory:
        inventory.write(f"all:\n  hosts:\n    {HOSTS['app2']}:\n      app_db_password: not-the-database-servers\n")
        inventory.flush()
        result = run_playbook("site.yml", "-i", inventory.name)
    assert_refused_before_any_change(
        result, "app_db_password", f"must be the postgresql_app_password of the database server {HOSTS['db']}")
    # The hosts with good input stopped too, in the same pre-flight play.
    assert "PLAY [Prepare every host]" not in result.stdout, result.stdout[-3000:]
