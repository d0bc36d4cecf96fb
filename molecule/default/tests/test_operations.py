"""Operations: backups with a proven restore, request ids end to end, log
rotation, and the status report."""
import hashlib
import json
import os
import shlex
import uuid

import pytest

from fixtures import MANAGE, make_api_user
from playbook_checks import assert_refused_before_any_change
from testlib import PROJECT_DIR, converged_with, gunicorn_main_pid, jwt_claims, recap_counts, run_playbook, wait_until

BACKUP_DIR = "/var/backups/postgresql"
UNIT = "drf-backup.service"


@pytest.fixture(scope="module")
def database(host):
    return host.ansible("debug", "var=backup_database")["backup_database"]


def _dumps(host, database):
    out = host.check_output(
        f"find {BACKUP_DIR} -maxdepth 1 -type f -name '{database}-*.dump' -printf '%p\\n'"
    )
    return sorted(out.split())


def _new_dump(host, database):
    """Run the backup job; the path of the dump it wrote."""
    before = _dumps(host, database)
    host.run_expect([0], f"systemctl start {UNIT}")
    (dump,) = sorted(set(_dumps(host, database)) - set(before))
    return dump


def _restore(dump):
    return run_playbook("restore.yml", "-e", f"backup_restore_file={dump}", "-e", "backup_restore_confirm=true")


def _output(result):
    return " ".join((result.stdout + result.stderr).split())


def _changed_nothing(result):
    counts = recap_counts(result.stdout)
    return bool(counts) and all(count["changed"] == 0 for count in counts.values())


def _checksums(host):
    return host.check_output(f"cd {BACKUP_DIR} && sha256sum -- * 2>/dev/null || true")


def _sql(host, database, query):
    return host.check_output(
        f"runuser -u postgres -- psql --no-psqlrc -At -d {database} -c {shlex.quote(query)}"
    )


def _blacklisted(host, database, jti):
    return int(_sql(
        host, database,
        "SELECT count(*) FROM token_blacklist_blacklistedtoken b "
        "JOIN token_blacklist_outstandingtoken o ON b.token_id = o.id "
        f"WHERE o.jti = '{jti}'",
    ))


@pytest.mark.parametrize("timer", ["drf-backup.timer", "drf-flush-tokens.timer"])
def test_timer_is_enabled_and_scheduled(host, timer):
    assert host.service(timer).is_enabled
    assert host.check_output(f"systemctl is-active {timer}") == "active"
    assert host.check_output(f"systemctl show --property NextElapseUSecRealtime --value {timer}")


def _outstanding(host, database, jti):
    return int(_sql(host, database, f"SELECT count(*) FROM token_blacklist_outstandingtoken WHERE jti = '{jti}'"))


def test_the_token_cleanup_deletes_expired_tokens_only(host, site, api_user, database):
    # Every login and refresh leaves a row, a redeemed token a second one.
    expired = site.obtain_tokens(api_user["username"], api_user["password"])
    assert site.post("/api/token/blacklist/", {"refresh": expired["refresh"]}).status == 200
    current = site.obtain_tokens(api_user["username"], api_user["password"])
    expired_jti, current_jti = (jwt_claims(tokens["refresh"])["jti"] for tokens in (expired, current))
    _sql(host, database, "UPDATE token_blacklist_outstandingtoken SET expires_at = now() - interval '1 minute'"
                         f" WHERE jti = '{expired_jti}'")
    assert _blacklisted(host, database, expired_jti) == 1

    host.run_expect([0], "systemctl start drf-flush-tokens.service")
    assert _outstanding(host, database, expired_jti) == 0
    assert _blacklisted(host, database, expired_jti) == 0
    assert _outstanding(host, database, current_jti) == 1
    assert site.post("/api/token/refresh/", {"refresh": current["refresh"]}).status == 200


def test_backup_then_restore_brings_the_data_back(host, site, api_user, database):
    # Data made through the API: a blacklisted refresh token.
    tokens = site.obtain_tokens(api_user["username"], api_user["password"])
    assert site.post("/api/token/blacklist/", {"refresh": tokens["refresh"]}).status == 200
    jti = jwt_claims(tokens["refresh"])["jti"]
    assert _blacklisted(host, database, jti) == 1

    dump = _new_dump(host, database)
    dump_file = host.file(dump)
    assert dump_file.user == "root" and dump_file.mode == 0o600 and dump_file.size > 0

    _sql(host, database, "DELETE FROM token_blacklist_blacklistedtoken")
    assert _blacklisted(host, database, jti) == 0

    # Named as `ls` in the backup directory shows it.
    result = _restore(os.path.basename(dump))
    assert result.returncode == 0, result.stdout[-4000:]
    assert _blacklisted(host, database, jti) == 1
    # The API agrees: the token is refused again, and logins work.
    assert site.post("/api/token/refresh/", {"refresh": tokens["refresh"]}).status == 401
    fresh = site.obtain_tokens(api_user["username"], api_user["password"])
    assert site.get("/api/me/", token=fresh["access"]).status == 200
    # Stopped for the restore with the rest of the app, and back.
    assert host.check_output("systemctl is-active drf-flush-tokens.timer") == "active"


def test_a_dump_kept_off_the_host_is_restored_from_the_control_machine(host, site, api_user, database, tmp_path):
    """The dump is gone from the database host (as after losing it) and
    only the copy backup.yml fetched is left: restore.yml uploads it into
    backup_dir, root only, and restores it. A different file of the same
    name is never overwritten, and nothing moves without the confirmation."""
    tokens = site.obtain_tokens(api_user["username"], api_user["password"])
    assert site.post("/api/token/blacklist/", {"refresh": tokens["refresh"]}).status == 200
    jti = jwt_claims(tokens["refresh"])["jti"]
    fetched = run_playbook("backup.yml", "-e", f"backup_fetch_dir={tmp_path}")
    assert fetched.returncode == 0, fetched.stdout[-4000:]
    (local,) = tmp_path.glob(f"{database}-*.dump")
    there = f"{BACKUP_DIR}/{local.name}"
    host.run_expect([0], f"rm -f {there}")
    _sql(host, database, "DELETE FROM token_blacklist_blacklistedtoken")
    try:
        unconfirmed = run_playbook("restore.yml", "-e", f"backup_restore_upload={local}")
        assert unconfirmed.returncode != 0 and "backup_restore_confirm" in _output(unconfirmed)
        assert _changed_nothing(unconfirmed) and not host.file(there).exists

        result = run_playbook("restore.yml", "-e", f"backup_restore_upload={local}",
                              "-e", "backup_restore_confirm=true")
        assert result.returncode == 0, result.stdout[-4000:]
        assert _blacklisted(host, database, jti) == 1
        assert site.post("/api/token/refresh/", {"refresh": tokens["refresh"]}).status == 401
        uploaded = host.file(there)
        assert (uploaded.user, uploaded.mode) == ("root", 0o600)
        digest = uploaded.sha256sum
        assert digest == hashlib.sha256(local.read_bytes()).hexdigest()

        other = tmp_path / "other" / local.name
        other.parent.mkdir()
        other.write_bytes(b"another file of the same name")
        refused = run_playbook("restore.yml", "-e", f"backup_restore_upload={other}",
                               "-e", "backup_restore_confirm=true")
        assert refused.returncode != 0
        assert f"backup_restore_upload: {there} already exists" in _output(refused), _output(refused)[-3000:]
        assert _changed_nothing(refused)
        assert host.file(there).sha256sum == digest
        assert host.check_output("systemctl is-active gunicorn.service") == "active"
    finally:
        host.run(f"rm -f {there}")


def test_a_restore_makes_the_database_the_dump_then_migrates_it(host, site, api_user, database):
    """A dump taken before a deploy's migration (README, "Rollback does not
    reverse schema changes"), restored after it: the database becomes the
    dump, so what the migration created is gone too (a table left behind
    would make the next migrate fail on it), and the running release's
    migrations are applied again before the app starts."""
    # The database as it was before the release's last migration.
    host.run_expect([0], f"{MANAGE} migrate --noinput auth 0011")
    try:
        dump = _new_dump(host, database)
    finally:
        host.run_expect([0], f"{MANAGE} migrate --noinput")
    # And a table of a later release's migration, made as the app's role.
    host.run_expect([0], f"{MANAGE} shell -c "
                         + shlex.quote("from django.db import connection; "
                                       "connection.cursor().execute('CREATE TABLE later_release_table (id int)')"))
    assert _sql(host, database, "SELECT to_regclass('later_release_table')") == "later_release_table"

    result = _restore(dump)
    assert result.returncode == 0, result.stdout[-4000:]
    assert _sql(host, database, "SELECT to_regclass('later_release_table')") == ""
    assert "[ ]" not in host.check_output(f"{MANAGE} showmigrations auth")
    assert site.serves_me(api_user["username"], api_user["password"])
    # Nothing the roles set up on the database went with the old objects.
    rerun = run_playbook("site.yml")
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    assert _changed_nothing(rerun), rerun.stdout[-4000:]


def test_a_restore_that_fails_part_way_changes_nothing_and_the_app_comes_back(host, site, api_user, database):
    """A dump whose script fails part way, after the old objects were
    dropped and some of the dump's restored: it gives a table to a role this
    server lacks, as a dump from another server may."""
    ghost = "restore_test_ghost"
    _sql(host, database, f"CREATE ROLE {ghost}; CREATE TABLE ghost_table (id int);"
                         f" ALTER TABLE ghost_table OWNER TO {ghost}")
    try:
        dump = _new_dump(host, database)
    finally:
        _sql(host, database, f"DROP TABLE ghost_table; DROP ROLE {ghost}")
    try:
        made_after = make_api_user(host)
        result = _restore(os.path.basename(dump))
        output = _output(result)
        assert result.returncode != 0
        assert "failed and was rolled back" in output and f"{ghost}" in output, output[-3000:]
    finally:
        host.run(f"rm -f {dump}")
    # Everything made after the dump is still there, and the app serves it.
    assert host.check_output("systemctl is-active gunicorn.socket drf-flush-tokens.timer").split() == ["active"] * 2
    assert site.serves_me(made_after["username"], made_after["password"])
    assert site.serves_me(api_user["username"], api_user["password"])


def test_restore_refuses_to_run_without_confirmation(host, database):
    dump = _dumps(host, database)[-1]
    result = run_playbook("restore.yml", "-e", f"backup_restore_file={dump}")
    assert result.returncode != 0
    assert "backup_restore_confirm" in result.stdout + result.stderr
    assert _changed_nothing(result)
    assert host.check_output("systemctl is-active gunicorn.service") == "active"


def _cut_short(host, dump, cut):
    """Write to `cut` the longest prefix of `dump`, in tenths, whose table of
    contents pg_restore lists but whose data it cannot read through: a copy
    cut short. (Where the data ends differs between PostgreSQL releases:
    PostgreSQL 17 restores a dump missing its last few bytes in full.)"""
    size = int(host.check_output(f"stat -c %s {dump}"))
    for tenths in range(9, 0, -1):
        host.run_expect([0], f"head -c {size * tenths // 10} {dump} > {cut}")
        if (host.run(f"pg_restore --list {cut}").rc == 0
                and host.run(f"pg_restore --file=/dev/null {cut}").rc != 0):
            return
    pytest.fail(f"no prefix of {dump} lists but cannot be read")


@pytest.mark.parametrize("name, kind, why", [
    ("missing.dump", "missing", "does not exist on"),
    ("garbage.dump", "garbage", "is not a dump pg_restore can read"),
    # Its table of contents reads: only reading all of it finds the end
    # missing, which restore.yml does before it stops the app.
    ("cut-short.dump", "cut short", "could not read from input file"),
])
def test_restore_refuses_a_dump_it_cannot_use_before_stopping_anything(host, database, name, kind, why):
    path = f"{BACKUP_DIR}/{name}"
    made = [path]
    try:
        if kind == "garbage":
            host.run_expect([0], f"echo 'not a dump' > {path}")
        elif kind == "cut short":
            made.append(_new_dump(host, database))
            _cut_short(host, made[-1], path)
        main_pid = gunicorn_main_pid(host)
        result = run_playbook("restore.yml", "-e", f"backup_restore_file={name}", "-e", "backup_restore_confirm=true")
    finally:
        host.run(f"rm -f {' '.join(made)}")
    assert result.returncode != 0
    output = _output(result)
    assert f"backup_restore_file: {path}" in output
    assert why in output
    assert _changed_nothing(result)
    assert gunicorn_main_pid(host) == main_pid


def test_backup_and_restore_in_check_mode_change_nothing(host, site, api_user, database, tmp_path):
    # An ops preview: backup.yml and a confirmed restore.yml with --check.
    host.run_expect([0], f"systemctl start {UNIT}")
    dump = _dumps(host, database)[-1]
    tokens = site.obtain_tokens(api_user["username"], api_user["password"])
    assert site.post("/api/token/blacklist/", {"refresh": tokens["refresh"]}).status == 200
    jti = jwt_claims(tokens["refresh"])["jti"]
    dumps_before = _checksums(host)
    main_pid = gunicorn_main_pid(host)

    result = run_playbook("backup.yml", "--check", "-e", f"backup_fetch_dir={tmp_path}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "none was taken" in " ".join(result.stdout.split())
    assert _checksums(host) == dumps_before
    assert list(tmp_path.iterdir()) == []

    result = run_playbook("restore.yml", "--check", "-e", f"backup_restore_file={os.path.basename(dump)}",
                          "-e", "backup_restore_confirm=true")
    assert result.returncode == 0, result.stdout[-4000:]
    # Made after the dump, so a real restore would have removed it.
    assert _blacklisted(host, database, jti) == 1
    assert gunicorn_main_pid(host) == main_pid
    assert site.get("/api/me/", token=tokens["access"]).status == 200


def test_failed_backup_shows_as_failed_unit_and_keeps_older_dumps(host, database):
    host.run_expect([0], f"systemctl start {UNIT}")
    before = _checksums(host)
    dropin = "/etc/systemd/system/drf-backup.service.d"
    # The target turns read-only: the unit's only writable path is withdrawn.
    host.run_expect([0], f"mkdir -p {dropin} && printf '[Service]\\nReadWritePaths=\\n' > {dropin}/test-readonly.conf"
                    " && systemctl daemon-reload")
    try:
        assert host.run(f"systemctl start {UNIT}").rc != 0
        assert host.check_output(f"systemctl is-failed {UNIT} || true") == "failed"
        journal = host.check_output(f"journalctl -u {UNIT} -n 20 --no-pager -o cat")
        assert "Read-only file system" in journal
        assert _checksums(host) == before
        assert host.check_output(f"find {BACKUP_DIR} -name '*.partial'") == ""
    finally:
        host.run(f"rm -rf {dropin} && systemctl daemon-reload && systemctl reset-failed {UNIT}")
    host.run_expect([0], f"systemctl start {UNIT}")


def test_retention_deletes_only_dumps_older_than_the_limit(host, database):
    # The limit the deployed job enforces, in whole minutes.
    minutes = int(host.check_output("grep -o -- '-mmin +[0-9]*' /usr/local/sbin/drf-backup").split("+")[1])
    days = minutes // 1440
    old = f"{BACKUP_DIR}/{database}-retention-old.dump"
    recent = f"{BACKUP_DIR}/{database}-retention-recent.dump"
    other = f"{BACKUP_DIR}/otherdb-retention-old.dump"
    host.run_expect([0], f"touch -d '{days} days ago 1 hour ago' {old} {other}"
                    f" && touch -d '{days} days ago 1 hour' {recent}")
    try:
        host.run_expect([0], f"systemctl start {UNIT}")
        assert not host.file(old).exists
        assert host.file(recent).exists
        assert host.file(other).exists
    finally:
        host.run(f"rm -f {old} {recent} {other}")


def test_backup_playbook_takes_a_dump_and_fetches_it_privately(host, database, tmp_path):
    """The copy lands in a directory made private if it was missing; one that
    exists keeps its mode; nothing but the dump is left behind. A relative
    backup_fetch_dir is read from where ansible-playbook runs, as a shell
    would (the playbooks run from the project directory)."""
    tmp_path.chmod(0o755)
    fetch_dir = tmp_path / "backups" / "db"
    before = _dumps(host, database)
    relative = os.path.relpath(fetch_dir, PROJECT_DIR)
    result = run_playbook("backup.yml", "-e", f"backup_fetch_dir={relative}")
    assert result.returncode == 0, result.stdout[-4000:]
    (dump,) = sorted(set(_dumps(host, database)) - set(before))
    assert f"Backup written to {dump}" in " ".join(result.stdout.split())
    fetched = fetch_dir / dump.rsplit("/", 1)[1]
    assert fetched.stat().st_mode & 0o077 == 0
    assert fetch_dir.stat().st_mode & 0o777 == 0o700
    assert tmp_path.stat().st_mode & 0o777 == 0o755
    assert [path.name for path in fetch_dir.iterdir()] == [fetched.name]
    # Nor beside the playbooks, where fetch alone reads a relative path.
    assert not [name for name in os.listdir(os.path.join(PROJECT_DIR, "playbooks")) if name.startswith(".")]
    # The same bytes as the dump the job checked with pg_restore on the host.
    assert hashlib.sha256(fetched.read_bytes()).hexdigest() == host.file(dump).sha256sum


def test_backup_and_restore_playbooks_refuse_bad_input_before_acting(host, database):
    """Checked before the job runs: it would write where the host's unit
    says, while the dump would be looked for where the bad input says."""
    before = _dumps(host, database)
    result = run_playbook("backup.yml", "-e", "backup_dir=backups")
    assert_refused_before_any_change(result, "backup_dir", "must be an absolute path")
    result = run_playbook("restore.yml", "-e", "backup_port=0", "-e", "backup_restore_confirm=true",
                          "-e", "backup_restore_file=app-20260101T000000Z.dump")
    assert_refused_before_any_change(result, "backup_port", "must be a TCP port")
    assert _dumps(host, database) == before
    assert host.service("gunicorn.service").is_running


def test_copy_command_runs_in_the_sandbox_with_its_credentials(host, database):
    # As an off-site copy does: read credentials under /root, write outside
    # the host's backup directory (here a stand-in for a mounted share).
    # A second share, not mounted (its directory missing), must not stop
    # the unit: systemd refuses to start one whose ReadWritePaths= is missing.
    offsite, unmounted = "/srv/offsite", "/srv/offsite-unmounted"
    host.run_expect([0], f"mkdir -p {offsite} && echo token-{uuid.uuid4().hex} > /root/.offsite-token")
    copy = {
        "backup_copy_command": f'cp "$1" {offsite}/ && cp /root/.offsite-token {offsite}/token-seen',
        "backup_copy_writable_paths": [offsite, unmounted],
    }
    try:
        result = run_playbook("site.yml", "-e", json.dumps(copy))
        assert result.returncode == 0, result.stdout[-4000:]
        dump = _new_dump(host, database)
        copied = host.file(f"{offsite}/{os.path.basename(dump)}")
        assert copied.exists and copied.size == host.file(dump).size
        assert host.file(f"{offsite}/token-seen").content_string == host.file("/root/.offsite-token").content_string
        assert f"copied {dump}" in host.check_output(f"journalctl -u {UNIT} -n 5 --no-pager -o cat")
    finally:
        # Back to the converged configuration, without the copy.
        result = run_playbook("site.yml")
        host.run(f"rm -rf {offsite} /root/.offsite-token")
    assert result.returncode == 0, result.stdout[-4000:]
    assert "drf-backup-copy" not in host.file("/usr/local/sbin/drf-backup").content_string


def test_request_id_is_followed_from_nginx_to_django(host, site):
    rid = "test-" + uuid.uuid4().hex
    response = site.get("/api/me/", headers={"X-Request-ID": rid})
    assert response.status == 401
    assert response.header_values("X-Request-ID") == [rid]

    access_log = host.run(f"grep -F 'request_id={rid} ' /var/log/nginx/access.log")
    assert access_log.rc == 0 and '"GET /api/me/ HTTP/1.1" 401' in access_log.stdout

    def django_line():
        journal = host.check_output("journalctl -u gunicorn.service -n 200 --no-pager -o cat")
        for line in journal.splitlines():
            if rid in line:
                return json.loads(line)
        return None

    line = wait_until(django_line, timeout=10)
    assert line, "no Django log line with the request id in the journal"
    assert line["request_id"] == rid
    assert line["path"] == "/api/me/" and line["status"] == 401


def test_the_journal_keeps_every_request_line_under_load(host):
    # journald's default per-service limit drops Django's per-request lines
    # under sustained load ("Suppressed N messages from gunicorn.service").
    # journald learns a unit's own limit only from these files, which systemd
    # writes at start for non-zero values: LogRateLimitIntervalSec=0 in the
    # unit wrote none and left the default in force. (Exceeding the default
    # takes tens of thousands of lines in 30 s, too many for a test: what
    # journald reads is checked instead.)
    # Each value is the target of a symbolic link.
    limits = host.run("readlink /run/systemd/units/log-rate-limit-interval:gunicorn.service "
                      "/run/systemd/units/log-rate-limit-burst:gunicorn.service")
    assert limits.rc == 0, "journald applies its default limit to gunicorn.service"
    interval_usec, burst = (int(value) for value in limits.stdout.split())
    # A million lines a second: far above what Gunicorn can log.
    assert (interval_usec, burst) == (1_000_000, 1_000_000)


def test_request_without_id_gets_one_that_nginx_logs(host, site):
    response = site.get("/healthz")
    (rid,) = response.header_values("X-Request-ID")
    assert len(rid) == 32
    assert host.run(f"grep -F 'request_id={rid} ' /var/log/nginx/access.log").rc == 0


def test_nginx_logs_are_rotated(host, site):
    assert host.file("/etc/logrotate.d/nginx").exists
    assert host.service("logrotate.timer").is_enabled
    host.run_expect([0], "logrotate --force /etc/logrotate.d/nginx")
    assert host.file("/var/log/nginx/access.log.1").exists
    # nginx reopened its log: new requests land in the new file.
    rid = "rotated-" + uuid.uuid4().hex
    site.get("/healthz", headers={"X-Request-ID": rid})
    assert wait_until(
        lambda: host.run(f"grep -qF 'request_id={rid} ' /var/log/nginx/access.log").rc == 0,
        timeout=10,
    )


def test_status_playbook_reports_every_host_in_check_mode():
    result = run_playbook("status.yml", "--check")
    assert result.returncode == 0, result.stdout[-4000:]
    assert _changed_nothing(result)
    # The callback wraps long messages; compare with the white space folded.
    output = " ".join(result.stdout.split())
    # The backup service ran earlier in this scenario; how it ended depends
    # on the tests before this one.
    for expected in ("postgresql ", "last backup: /var/backups/postgresql/", "release ",
                     "; last run ", " (started ", "timer active, next run ",
                     "gunicorn.service active", "drf-flush-tokens.timer active", "certificate for", "days left"):
        assert expected in output, expected


def test_consumers_follow_the_database_port_and_the_app_socket(host, site, api_user, database):
    """The inventory hands settings from role to role (topology.yml):
    postgresql_port, which also names the server's Unix socket, to the app
    and the backup; app_gunicorn_socket to nginx. One run moves the server
    to 5433, changes a session limit (a restart and a reload: the restart
    must come first) and moves Gunicorn's socket; the API (through nginx), a
    backup and a restore work there; the next plain run moves everything
    back. One test, so that the host is reconfigured twice, not four times."""
    socket, moved_socket = "/run/gunicorn/gunicorn.sock", "/run/gunicorn-api/api.sock"
    moved = {"postgresql_port": 5433, "postgresql_idle_in_transaction_timeout": 30,
             "app_gunicorn_socket": moved_socket}

    with converged_with(moved):
        assert host.socket("tcp://127.0.0.1:5433").is_listening
        assert not host.socket("tcp://127.0.0.1:5432").is_listening
        assert host.socket(f"unix://{moved_socket}").is_listening
        assert not host.socket(f"unix://{socket}").is_listening
        assert host.check_output("runuser -u postgres -- psql --no-psqlrc -p 5433 -At"
                                 " -c 'SHOW idle_in_transaction_session_timeout'") == "30s"
        assert site.serves_me(api_user["username"], api_user["password"])

        dump = _new_dump(host, database)
        result = run_playbook("restore.yml", "-e", json.dumps(
            {**moved, "backup_restore_file": os.path.basename(dump), "backup_restore_confirm": True}))
        assert result.returncode == 0, result.stdout[-4000:]
        assert site.serves_me(api_user["username"], api_user["password"])
    assert host.socket("tcp://127.0.0.1:5432").is_listening
    assert host.socket(f"unix://{socket}").is_listening
    assert site.serves_me(api_user["username"], api_user["password"])
