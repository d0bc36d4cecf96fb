"""A rolling deploy.yml across both app hosts, one at a time (the default),
under load through the load balancer: no request fails, for a while the two
hosts serve different releases, and the release's migration runs once.
Then a release from git, one commit on every app host."""
import json
import os
import re

from conftest import APP_HOSTS, HOSTS
from testlib import add_migration, git_commit, project_variant, publish_git_repository, run_playbook


def _current_release(host):
    return os.path.basename(host.check_output("readlink /srv/app/current"))


def _first_seen(records, served_by, release):
    return min(r[0] for r in records if r[5] == served_by and r[4] == release)


MIGRATION = "0001_rolling_marker"


def _add_migration(project):
    """A migration the running release does not mind (a new table), so that
    the deploy has one to run."""
    add_migration(project, MIGRATION, "[migrations.RunSQL("
                  "'CREATE TABLE rolling_marker (id integer)', 'DROP TABLE rolling_marker')]")


def _task_results(output, task):
    """[(status, host)] that the run printed for the task named `task`."""
    runs = output.split(f"TASK [{task}]")[1:]
    return [match for run in runs
            for match in re.findall(r"^(ok|changed|failed|skipping): \[([^\]]+)\]", run.split("TASK [")[0], re.M)]


def test_rolling_deploy_drops_no_request(hosts, load):
    before = {_current_release(hosts[part]) for part in APP_HOSTS}
    assert len(before) == 1
    source = project_variant("rolling", _add_migration)
    with load() as running:
        # No app_deploy_serial: one host at a time is the default.
        result = run_playbook("deploy.yml", "-e", f"app_source_dir={source}")
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
    # The migration ran once, on one host, and is applied.
    assert _task_results(result.stdout, "app : Apply database migrations") == [("changed", HOSTS["app1"])]
    applied = hosts["app2"].check_output("/usr/local/sbin/app-manage showmigrations accounts")
    assert f"[X] {MIGRATION}" in applied, applied


def test_a_git_release_is_one_commit_on_every_app_host(hosts):
    """The branch is turned into a commit once, for every app host. Here each
    app host has a repository of its own at the same URL, app2's one commit
    ahead of app1's, as if a push had landed between the two hosts' fetches:
    both build the commit the first app host (app1) was told of."""
    work = project_variant("git", _add_migration)  # keeps the applied migration
    told = git_commit(work, "Release 1")
    url = publish_git_repository(hosts["app1"], work)
    with open(os.path.join(work, "VARIANT"), "a") as variant:
        variant.write("pushed while the hosts fetch\n")
    git_commit(work, "Release 2")
    assert publish_git_repository(hosts["app2"], work) == url

    result = run_playbook("deploy.yml", "-e", json.dumps({"app_source_dir": "", "app_git_repo": url}))
    assert result.returncode == 0, result.stdout[-4000:]
    assert _task_results(result.stdout, "app : Ask the git repository which commit the version names") == [
        ("ok", HOSTS["app1"])]
    assert {part: _current_release(hosts[part]) for part in APP_HOSTS} == {part: told[:12] for part in APP_HOSTS}
