"""Zero-downtime releases, failed migrations and starts, rollback, pruning.

The tests run in file order and build on each other, like the releases of a
real project: A (converged), then B, a broken C and D, back to A, a release
from git (again over HTTP, with a token in the URL), enough more to be
pruned, back to a release by name, a migration without the pre-migration
dump, one kept waiting for a lock, a deploy stopped while it installs
requirements, and a switch cut off before its restart. The deploys that
switch or fail run
under a bounded load of token requests and authenticated GET /api/me/ calls
over HTTPS.
"""
import json
import os
import re
import secrets
import time

import pytest

from testlib import (PROJECT_DIR, Load, add_migration, cut_off_playbook, git_commit, gunicorn_main_pid,
                     project_variant, publish_git_repository, recap_counts, run_playbook, table_locked,
                     wait_until)

RENDERED = os.path.join(PROJECT_DIR, "build", "app")
RELEASES = "/srv/app/releases"


def _add_failing_migration(project):
    add_migration(project, "0001_fails", "[migrations.RunPython(fail)]", preamble=(
        "def fail(apps, schema_editor):\n"
        "    raise RuntimeError('this migration fails on purpose')\n\n\n"
    ))


def _break_startup(project):
    # Django's checks pass (they do not import the WSGI module); Gunicorn's
    # workers cannot boot.
    with open(os.path.join(project, "config", "wsgi.py"), "a") as wsgi:
        wsgi.write("\nraise RuntimeError('this release cannot start')\n")


def _deploy(source, *extra):
    return run_playbook("deploy.yml", "-e", f"app_source_dir={source}", *extra)


def _venv_of(host, release):
    """The shared virtualenv a release's venv link points at."""
    return host.check_output(f"readlink {RELEASES}/{release}/venv")


def _requirements_marked(mark):
    """A change that adds a comment line to the requirements: the same pins,
    a different file, so a virtualenv of its own."""
    def change(project):
        with open(os.path.join(project, "requirements", "base.txt"), "a") as requirements:
            requirements.write(f"# {mark}\n")
    return change


def _current_release(host):
    return os.path.basename(host.check_output("readlink /srv/app/current"))


def _served_release(site):
    response = site.get("/healthz")
    assert response.status == 200
    return response.headers["X-Release"]


@pytest.fixture(scope="module")
def load(site, api_user):
    def start(**kwargs):
        return Load(site, api_user["username"], api_user["password"], **kwargs)
    return start


@pytest.fixture(scope="module")
def history():
    """Release ids by name, filled in as the tests deploy them."""
    return {}


def _settle(load_run, seconds=3):
    """Keep the load running a little after a change, then stop it."""
    load_run.hold(seconds)
    load_run.stop()


def test_deploy_switches_releases_without_a_failed_request(host, site, load, history):
    history["A"] = _served_release(site)
    source = project_variant("B")
    with load() as running:
        result = _deploy(source)
        _settle(running)
    print(f"deploy A -> B under load: {running.summary()}")
    assert result.returncode == 0, result.stdout[-4000:]
    history["B"] = _current_release(host)
    assert history["B"] != history["A"]
    assert running.failures() == [], running.summary()
    assert running.releases() == [history["A"], history["B"]]
    assert _served_release(site) == history["B"]
    # Only the code changed: B uses the virtualenv A was built with.
    assert _venv_of(host, history["B"]) == _venv_of(host, history["A"])


def test_failed_migration_switches_nothing_and_keeps_serving(host, site, load, history):
    source = project_variant("C", _add_failing_migration)
    with load() as running:
        result = _deploy(source)
        _settle(running)
    print(f"deploy C (failing migration) under load: {running.summary()}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "this migration fails on purpose" in output
    assert _current_release(host) == history["B"]
    assert running.failures() == [], running.summary()
    assert running.releases() == [history["B"]]

    # The dump taken before migrating is announced and readable by root only.
    (line,) = [line for line in output.splitlines() if "Database dumped to" in line]
    dump = line.split("Database dumped to ", 1)[1].split()[0]
    dump_file = host.file(dump)
    assert dump_file.exists and dump_file.size > 0
    assert dump_file.user == "root" and dump_file.mode & 0o077 == 0
    assert host.run(f"pg_restore --list {dump}").rc == 0


def test_check_mode_previews_deploys_and_a_rollback_without_doing_them(host, site, history):
    def state():
        return (
            _current_release(host),
            host.check_output(f"ls -1 {RELEASES}"),
            host.check_output("find /var/backups -name '*.dump' | sort"),
            gunicorn_main_pid(host),
        )

    before = state()
    # A release no host has: check mode cannot build it, and says so.
    result = _deploy(project_variant("P"), "--check")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "is not built on" in " ".join(result.stdout.split())
    # C again (the same content, so the same release): built by the failed
    # deploy, its migration never applied. The plan says what would run.
    result = _deploy(project_variant("C", _add_failing_migration), "--check")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Check mode: a run would apply accounts.0001_fails." in " ".join(result.stdout.split())
    result = run_playbook("rollback.yml", "--check")
    assert result.returncode == 0, result.stdout[-4000:]
    assert state() == before
    assert _served_release(site) == history["B"]


def test_release_that_cannot_start_is_switched_back(host, site, load, history):
    source = project_variant("D", _break_startup)
    with load() as running:
        result = _deploy(source, "-e", "app_health_timeout=12")
        restored_at = time.monotonic()
        _settle(running, seconds=5)
    print(f"deploy D (cannot start) under load: {running.summary()}; "
          f"failures before the restore: {len(running.failures())}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "did not answer /readyz" in output
    assert f"Switched back to {history['B']}" in output
    assert _current_release(host) == history["B"]
    assert _served_release(site) == history["B"]
    assert running.failures(since=restored_at) == [], running.summary()
    assert [r for r in running.records if r[0] >= restored_at], "no load after the restore"


def test_rollback_returns_to_the_previous_release(host, site, load, history):
    with load() as running:
        result = run_playbook("rollback.yml")
        _settle(running)
    print(f"rollback B -> A under load: {running.summary()}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert _current_release(host) == history["A"]
    assert _served_release(site) == history["A"]
    assert running.failures() == [], running.summary()


def test_deploying_the_running_version_again_changes_nothing(host, history):
    result = _deploy(RENDERED)
    assert result.returncode == 0, result.stdout[-4000:]
    counts = recap_counts(result.stdout)
    assert counts and all(count["changed"] == 0 for count in counts.values()), result.stdout[-4000:]
    assert _current_release(host) == history["A"]


def test_release_from_a_git_repository(host, site, history):
    """With no app_git_version, the repository's default branch (`trunk`).
    The clone the hosts keep holds app_git_repo, which may carry a token:
    only root reads it."""
    work = project_variant("G")
    commit = git_commit(work, "Release G")
    # A repository on the app host itself.
    url = publish_git_repository(host, work)
    source = json.dumps({"app_source_dir": "", "app_git_repo": url})
    result = run_playbook("deploy.yml", "-e", source)
    assert result.returncode == 0, result.stdout[-4000:]
    history["G"] = commit[:12]
    assert _current_release(host) == history["G"]
    assert _served_release(site) == history["G"]
    cache = host.file("/srv/app/repo")
    assert (cache.user, cache.group, cache.mode) == ("root", "root", 0o700)

    # A repository whose HEAD names no branch that exists: the deploy stops
    # before anything switches, and says what to set.
    host.run_expect([0], "git --git-dir=/srv/test-repo.git symbolic-ref HEAD refs/heads/gone")
    try:
        result = run_playbook("deploy.yml", "-e", source)
    finally:
        host.run_expect([0], "git --git-dir=/srv/test-repo.git symbolic-ref HEAD refs/heads/trunk")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "app_git_version is empty" in output and "names none" in output, output[-3000:]
    assert _current_release(host) == history["G"]
    assert _served_release(site) == history["G"]


@pytest.fixture
def git_over_http(host):
    """The repository of the test above served over plain (dumb) HTTP on
    the app host's loopback: a URL that can carry credentials."""
    host.run_expect([0], "git --git-dir=/srv/test-repo.git update-server-info")
    host.run_expect([0], "systemd-run --unit=test-git-http python3 -m http.server"
                         " --bind 127.0.0.1 --directory /srv 8123")
    try:
        assert wait_until(lambda: host.socket("tcp://127.0.0.1:8123").is_listening, timeout=30)
        yield "127.0.0.1:8123/test-repo.git"
    finally:
        host.run("systemctl stop test-git-http")


def test_a_token_in_the_git_url_stays_out_of_the_output(host, site, history, git_over_http):
    """Ops debug a failed deploy with -vvv, which prints each module's
    arguments: the git URL's token must not show, in a fetch that works or
    in one that fails, and the clone that keeps it is root's alone."""
    token = "ghp_" + secrets.token_hex(16)
    source = json.dumps({"app_source_dir": "", "app_git_repo": f"http://deploy:{token}@{git_over_http}",
                         "app_git_version": "trunk"})
    result = run_playbook("deploy.yml", "-vvv", "-e", source)
    output = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-4000:]
    assert token not in output
    assert _current_release(host) == history["G"]
    # The clone keeps the URL (git needs it) where the app cannot read it.
    assert host.run("runuser -u django -- cat /srv/app/repo/.git/config").rc != 0
    assert token in host.check_output("cat /srv/app/repo/.git/config")

    # A commit the repository does not have: the fetch fails, and says why.
    missing = "0123456789abcdef0123456789abcdef01234567"
    result = run_playbook("deploy.yml", "-vvv", "-e", source, "-e", f"app_git_version={missing}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert token not in output
    assert f"Could not fetch {missing} of app_git_repo (http://***@{git_over_http})" in output, output[-3000:]
    assert _current_release(host) == history["G"]
    assert _served_release(site) == history["G"]


def test_only_the_newest_releases_are_kept(host, history):
    """Pruning keeps the newest releases and the virtualenvs they use: E's
    requirements differ, so E has a virtualenv of its own; one that no
    release uses (as an interrupted build leaves) goes."""
    keep = 3
    assert len(host.check_output(f"ls -1 {RELEASES}").split()) > keep
    unused = "/srv/app/venvs/0123456789abcdef"
    host.run_expect([0], f"mkdir {unused}")
    for name, change in (("E", _requirements_marked("release E")), ("F", None)):
        result = _deploy(project_variant(name, change), "-e", f"app_keep_releases={keep}")
        assert result.returncode == 0, result.stdout[-4000:]
        history[name] = _current_release(host)
    releases = host.check_output(f"ls -1 {RELEASES}").split()
    assert len(releases) == keep, releases
    # The newest three by switch time: F (current), E (previous), G.
    assert sorted(releases) == sorted([history["F"], history["E"], history["G"]])
    assert os.path.basename(host.check_output("readlink /srv/app/previous")) == history["E"]

    assert _venv_of(host, history["E"]) != _venv_of(host, history["F"]) == _venv_of(host, history["G"])
    venvs = host.check_output("ls -1 /srv/app/venvs").split()
    assert sorted(f"/srv/app/venvs/{venv}" for venv in venvs) == sorted(
        {_venv_of(host, release) for release in releases})


def test_rollback_to_a_named_release_and_refusal_of_an_unknown_one(host, site, load, history):
    with load() as running:
        result = run_playbook("rollback.yml", "-e", f"app_rollback_release={history['G']}")
        _settle(running)
    print(f"rollback F -> G (named) under load: {running.summary()}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert _current_release(host) == history["G"]
    assert _served_release(site) == history["G"]
    assert running.failures() == [], running.summary()

    result = run_playbook("rollback.yml", "-e", "app_rollback_release=no-such-release")
    assert result.returncode != 0
    assert 'app_rollback_release "no-such-release" is not a built release' in result.stdout + result.stderr
    assert _current_release(host) == history["G"]


def _add_migration(project):
    add_migration(project, "0001_marker", "[migrations.RunSQL("
                  "'CREATE TABLE release_marker (id integer)', 'DROP TABLE release_marker')]")


def test_migrating_without_the_pre_migration_dump_when_switched_off(host, site, history):
    dumps = "/var/backups/drf-app"
    before = host.check_output(f"ls -1 {dumps}")
    result = _deploy(project_variant("M", _add_migration), "-e", "app_backup_before_migrate=false")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    applied = host.check_output("/usr/local/sbin/app-manage showmigrations accounts")
    assert "[X] 0001_marker" in applied, applied
    assert "Database dumped to" not in output
    assert host.check_output(f"ls -1 {dumps}") == before
    history["M"] = _current_release(host)
    assert _served_release(site) == history["M"]


def _add_column_to_the_users_table(project):
    add_migration(project, "0001_release_note", "[migrations.RunSQL("
                  "'ALTER TABLE auth_user ADD COLUMN release_note text', "
                  "'ALTER TABLE auth_user DROP COLUMN release_note')]")


def test_a_migration_kept_waiting_for_a_lock_gives_up_and_the_api_keeps_serving(host, site, load, history):
    # A long transaction (a report, a pg_dump) reads the users table. The
    # migration's ALTER TABLE waits for it, and every query on the table
    # queues behind that wait: without a lock timeout, logins and API calls
    # hang until the reader ends. With it, each try gives up after
    # app_migrate_lock_timeout seconds, the deploy stops after the retries,
    # and the running release serves on.
    source = project_variant("L", _add_column_to_the_users_table)
    limits = ("-e", "app_migrate_lock_timeout=2", "-e", "app_migrate_lock_retries=1")
    with table_locked(host, "auth_user", "ACCESS SHARE"):
        with load() as running:
            result = _deploy(source, *limits)
            _settle(running)
    print(f"deploy L (migration kept waiting for a lock) under load: {running.summary()}")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "canceling statement due to lock timeout" in output
    assert "RETRYING" in output
    assert _current_release(host) == history["M"]
    assert running.failures() == [], running.summary()
    assert running.releases() == [history["M"]]

    # The reader gone, the same deploy goes through.
    result = _deploy(source, *limits)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "[X] 0001_release_note" in host.check_output("/usr/local/sbin/app-manage showmigrations accounts")
    assert _served_release(site) == _current_release(host) != history["M"]


UNFINISHED_VENVS = "find /srv/app/venvs -mindepth 1 -maxdepth 1 -type d ! -exec test -e {}/.complete ';' -print"


def test_a_deploy_stopped_while_installing_requirements_is_redone_by_the_next(host, site):
    """A deploy stopped while pip installs leaves a virtualenv without its
    marker; the next deploy throws it away, builds it again and switches."""
    source = project_variant("I", _requirements_marked("release I"))
    cut_off_playbook("app : Install the pinned, hashed Python requirements", "deploy.yml",
                     "-e", f"app_source_dir={source}")
    # The controller is gone; pip on the host may still be finishing.
    assert wait_until(lambda: host.run("pgrep -f '^/srv/app/venvs/.*/pip'").rc == 1, timeout=120)
    (unfinished,) = host.check_output(UNFINISHED_VENVS).split()

    result = _deploy(source)
    assert result.returncode == 0, result.stdout[-4000:]
    cleanup = result.stdout.split("TASK [app : Remove what an interrupted virtualenv build left]", 1)[1]
    cleanup = cleanup.split("TASK [", 1)[0]
    assert re.search(r"^changed: \[", cleanup, re.MULTILINE), cleanup
    release = _current_release(host)
    assert _served_release(site) == release
    assert _venv_of(host, release) == unfinished
    assert host.check_output(UNFINISHED_VENVS) == ""


def test_a_switch_cut_off_before_the_restart_is_finished_by_the_next_run(host, site):
    """A run cut off right after it pointed "current" at a release, before
    it restarted Gunicorn, leaves the link switched, its note of the pending
    restart, and the old release serving. The next run finds the link
    already where it should be and must still restart, or it reports
    success while the old code answers. (The state is made by hand: no
    signal lands reliably between two tasks that follow each other in
    milliseconds.)"""
    serving = _current_release(host)
    target = os.path.basename(host.check_output("readlink /srv/app/previous"))
    assert target != serving
    pid = gunicorn_main_pid(host)
    host.run_expect([0], f"echo {target} > /srv/app/.restart-pending && "
                         f"ln -sfn {RELEASES}/{target} /srv/app/current.cut && "
                         "mv -T /srv/app/current.cut /srv/app/current")
    assert _served_release(site) == serving

    result = run_playbook("rollback.yml", "-e", f"app_rollback_release={target}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert gunicorn_main_pid(host) != pid
    assert _served_release(site) == _current_release(host) == target
    assert not host.file("/srv/app/.restart-pending").exists
