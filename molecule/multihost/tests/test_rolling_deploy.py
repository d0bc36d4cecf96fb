"""A rolling deploy.yml across both app hosts, one at a time, under load
through the load balancer: no request fails, and for a while the two hosts
serve different releases."""
import os

from conftest import APP_HOSTS, HOSTS
from testlib import project_variant, run_playbook


def _current_release(host):
    return os.path.basename(host.check_output("readlink /srv/app/current"))


def _first_seen(records, served_by, release):
    return min(r[0] for r in records if r[5] == served_by and r[4] == release)


def test_rolling_deploy_drops_no_request(hosts, load):
    before = {_current_release(hosts[part]) for part in APP_HOSTS}
    assert len(before) == 1
    source = project_variant("rolling")
    with load() as running:
        result = run_playbook("deploy.yml", "-e", f"app_source_dir={source}", "-e", "app_deploy_serial=1")
        running.hold(3)
    print(f"rolling deploy under load: {running.summary()}")
    assert result.returncode == 0, result.stdout[-4000:]

    after = {_current_release(hosts[part]) for part in APP_HOSTS}
    assert len(after) == 1 and after != before
    (old,), (new,) = before, after
    assert running.failures() == [], running.summary()
    # One host at a time: app1 served the new release while app2 still
    # served the old one.
    app1_switched = _first_seen(running.records, HOSTS["app1"], new)
    assert app1_switched < _first_seen(running.records, HOSTS["app2"], new)
    assert any(r[5] == HOSTS["app2"] and r[4] == old and r[0] > app1_switched for r in running.records)
    # Migrations ran once: only one host took the pre-migration step.
    assert result.stdout.count("TASK [app : Apply database migrations]") <= 1
