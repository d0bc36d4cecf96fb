"""Changing names and paths on a host that serves: what the app holds (its
database and role, its account, its uploads, its keys) either goes along
or the run is refused before any change, and the READMEs' ways of changing
them lose nothing: not the data, not the uploads, not a session. And a
run cut off half-way leaves nothing for the next run to miss."""
import json
import os
import shlex

from fixtures import MANAGE, release_independent, release_independent_on_trixie
from playbook_checks import assert_refused_before_any_change
from testlib import cut_off_playbook, gunicorn_main_pid, recap_counts, run_playbook, wait_until

# The inventory's names (inventory/demo) and the new ones.
OLD = {"role": "app", "database": "app", "account": "django", "media": "/srv/app/media"}
NEW = {"role": "api_renamed", "database": "api_renamed", "account": "api_other", "media": "/srv/app/uploads"}
MOVED_KEYRING = "/etc/drf-jwt-moved/keyring.json"
UPLOAD = "test-upload.txt"
ENV_FILE = "/etc/drf-app/app.env"
RESTART_NOTE = "/srv/app/.restart-pending"
EXTRA_CA = "/usr/local/share/ca-certificates/extra-ca-bundle.crt"
TRUST_STORE = "/etc/ssl/certs/ca-certificates.crt"


def _site(extra_vars=None):
    return run_playbook("site.yml", *(["-e", json.dumps(extra_vars)] if extra_vars else []))


def _refused(extra_vars, variable, reason):
    assert_refused_before_any_change(_site(extra_vars), variable, reason)


def _site_with_gunicorn_stopped(host, *commands, extra_vars=None):
    """The READMEs' way to change what a running Gunicorn holds: stop it
    with its socket (a request would start it again), run `commands` as
    root, then site.yml."""
    host.run_expect([0], "systemctl stop gunicorn.socket gunicorn.service")
    for command in commands:
        host.run_expect([0], command)
    return _site(extra_vars)


def _rename(kind, old, new):
    sql = f"ALTER {kind} {old} RENAME TO {new}"
    return f"runuser -u postgres -- psql --no-psqlrc -v ON_ERROR_STOP=1 -c {shlex.quote(sql)}"


def _gunicorn_accounts(host):
    return host.check_output("ps -o user= -C gunicorn | sort -u")


def test_a_rerun_starts_a_gunicorn_someone_stopped(host, site, api_user):
    """Stopped by hand with its socket (for maintenance, or for a rename
    below): site.yml starts it on the same release and its health gate
    passes, instead of waiting out its timeout for a service nothing had
    started and "switching back"."""
    try:
        result = _site_with_gunicorn_stopped(host)
        assert result.returncode == 0, result.stdout[-4000:]
        counts = recap_counts(result.stdout)[host.backend.get_hostname()]
        assert counts["rescued"] == 0 and counts["changed"] == 1, result.stdout[-4000:]
        assert site.serves_me(api_user["username"], api_user["password"])
    finally:
        host.run("systemctl start gunicorn.socket gunicorn.service")


def _certificates(host, path):
    """The PEM certificates in a file, each as one string."""
    text = host.file(path).content_string
    return {block.split("-----END", 1)[0].strip() for block in text.split("-----BEGIN CERTIFICATE-----")[1:]}


def _psql(host, sql):
    return host.check_output(f"runuser -u postgres -- psql -XAtc {shlex.quote(sql)}")


def _running_other_than_on_disk(host, path, sed, apply, applied):
    """Make a service run `path` as `sed` changes it while the file on disk
    stays as it is, though written anew: what a run cut off between writing
    a file and its handler leaves. `apply` makes the service read the file,
    `applied()` says when it has."""
    host.run_expect([0], f"cp -p {path} /root/kept-config && sed -i {shlex.quote(sed)} {path} && {apply}")
    try:
        assert wait_until(applied, timeout=30)
    finally:
        host.run_expect([0], f"cp /root/kept-config {path} && rm /root/kept-config")


def _firewall_rule_cut_off(host):
    return "cut-off" in host.check_output("nft list table inet drf_firewall")


def _socket_mode(host):
    return host.file("/run/gunicorn/gunicorn.sock").mode


def _nginx_workers(host):
    return int(host.run("pgrep -c -x -f 'nginx: worker process'").stdout.strip() or 0)


@release_independent_on_trixie
def test_a_run_cut_off_part_way_leaves_nothing_for_the_next_to_miss(host, site, api_user):
    """Handlers run late, and a run cut off before them leaves files
    changed and their service not told, while the next run, finding every
    file as it should be, would notify nobody. Such states:
    - the trust store without base_extra_ca_certificates (a run cut off
      before update-ca-certificates; made by hand here: the store built
      without the file, then the file renamed into place as the copy
      module writes it): every later run failed in pip behind the proxy;
    - Gunicorn's new environment written but Gunicorn not restarted (a real
      cut, at the release build, minutes before the restart handler; then
      its note removed, as a cut right after the file would leave it);
    - PostgreSQL's, nftables', nginx's and Gunicorn's socket's files
      written, but the service not restarted or reloaded (made by hand: the
      service made to read a changed copy, then the file written back as it
      was). The socket is not the note's business: restarting the service
      leaves it as it was."""
    host.run_expect([0], f"mv {EXTRA_CA} /root/extra-ca.crt && update-ca-certificates --fresh"
                         f" && mv /root/extra-ca.crt {EXTRA_CA}")
    assert not _certificates(host, EXTRA_CA) <= _certificates(host, TRUST_STORE)
    conf_dir = os.path.dirname(_psql(host, "SHOW config_file"))
    connections = int(_psql(host, "SHOW max_connections"))
    _running_other_than_on_disk(
        host, f"{conf_dir}/conf.d/10-drf-stack.conf", f"s/^max_connections = .*/max_connections = {connections + 1}/",
        "systemctl restart postgresql", lambda: _psql(host, "SHOW max_connections") == str(connections + 1))
    _running_other_than_on_disk(
        host, "/etc/nftables.conf", '/ct state invalid drop/a tcp dport 9 accept comment "cut-off"',
        "systemctl reload nftables", lambda: _firewall_rule_cut_off(host))
    workers = _nginx_workers(host)
    _running_other_than_on_disk(
        host, "/etc/nginx/nginx.conf", f"s/^worker_processes auto;/worker_processes {workers + 1};/",
        "systemctl reload nginx", lambda: _nginx_workers(host) == workers + 1)
    _running_other_than_on_disk(
        host, "/etc/systemd/system/gunicorn.socket", "s/^SocketMode=0660/SocketMode=0666/",
        "systemctl daemon-reload && systemctl stop gunicorn.service && systemctl restart gunicorn.socket"
        " && systemctl start gunicorn.service",
        lambda: _socket_mode(host) == 0o666)
    extra_vars = {"app_extra_env": {"CUT_OFF_RUN": "1"}}
    pid = gunicorn_main_pid(host)
    cut_off_playbook("app : Look for a finished build of the release", "site.yml", "-e", json.dumps(extra_vars))
    try:
        # The cut run, past base, the firewall and the database, rebuilt the
        # trust store, reloaded the rules and restarted PostgreSQL; nginx
        # comes after the app.
        assert _certificates(host, EXTRA_CA) <= _certificates(host, TRUST_STORE)
        assert _psql(host, "SHOW max_connections") == str(connections)
        assert not _firewall_rule_cut_off(host)
        assert _nginx_workers(host) == workers + 1
        assert _socket_mode(host) == 0o666
        timeout = _psql(host, "SHOW idle_in_transaction_session_timeout")
        _running_other_than_on_disk(
            host, f"{conf_dir}/conf.d/20-drf-stack-sessions.conf",
            "s/^idle_in_transaction_session_timeout = .*/idle_in_transaction_session_timeout = '77s'/",
            "runuser -u postgres -- psql -XAtc 'SELECT pg_reload_conf()'",
            lambda: _psql(host, "SHOW idle_in_transaction_session_timeout") == "77s")
        host.run_expect([0], f"grep -q '^CUT_OFF_RUN=' {ENV_FILE}")
        assert host.file(RESTART_NOTE).exists
        assert gunicorn_main_pid(host) == pid
        # What a cut a moment earlier leaves, between the environment file
        # and the note: then only Gunicorn's start time tells.
        host.run_expect([0], f"rm {RESTART_NOTE}")

        result = _site(extra_vars)
        assert result.returncode == 0, result.stdout[-4000:]
        assert gunicorn_main_pid(host) not in (0, pid)
        assert not host.file(RESTART_NOTE).exists
        assert site.serves_me(api_user["username"], api_user["password"])
        assert _psql(host, "SHOW idle_in_transaction_session_timeout") == timeout
        assert _nginx_workers(host) == workers
        assert _socket_mode(host) == 0o660
    finally:
        result = _site()
        assert result.returncode == 0, result.stdout[-4000:]
    host.run_expect([1], f"grep -q '^CUT_OFF_RUN=' {ENV_FILE}")
    assert not host.file(RESTART_NOTE).exists
    # Each applied once: the run after finds nothing left to apply.
    for task in ("base : Note a trust store older than its certificates",
                 "firewall : Look for rules nftables has not loaded",
                 "postgresql : Note configuration that needs a restart to apply",
                 "postgresql : Note configuration that needs a reload to apply",
                 "nginx : Look for configuration nginx has not loaded",
                 "app : Note a socket unit newer than the socket Gunicorn listens on",
                 "app : Note configuration newer than Gunicorn's start"):
        output = result.stdout.partition(f"TASK [{task}]")[2].split("TASK [", 1)[0]
        assert "changed:" not in output, task


@release_independent
def test_what_a_serving_app_holds_is_not_renamed_or_moved_under_it(host):
    """A new role would get the database without its tables; a new database
    name would start the API on an empty one; a new account would take the
    keyring from running workers; a new media directory would leave the
    uploads behind. Each is refused before any change, naming the variable."""
    _refused({"postgresql_app_user": NEW["role"]}, "postgresql_app_user", "owns its tables")
    _refused({"postgresql_app_database": NEW["database"]}, "postgresql_app_database", "leaving the data behind")
    # Both at once: the database the last run recorded is still there.
    _refused({"postgresql_app_user": NEW["role"], "postgresql_app_database": NEW["database"]},
             "postgresql_app_database", "leaving the data behind")
    _refused({"app_group": NEW["account"]}, "app_group", f'but Gunicorn runs as "{OLD["account"]}"')
    host.run_expect([0], f"runuser -u django -- sh -c 'echo kept > {OLD['media']}/{UPLOAD}'")
    try:
        # app_root places the media directory by default.
        _refused({"app_root": "/srv/api"}, "app_media_root", "app_root's media directory")
    finally:
        host.run(f"rm -f {OLD['media']}/{UPLOAD}")


@release_independent
def test_renamed_and_moved_the_documented_way_nothing_is_lost(host, site, api_user):
    """The keyring moves under the running app; then, with Gunicorn stopped
    (roles/postgresql and roles/app READMEs), the role and database are
    renamed in PostgreSQL, the uploads moved, and one run takes the new
    names: the same user logs in, an upload is where Django looks, tokens
    issued before every change still work. Everything goes back the same way."""
    tokens = site.obtain_tokens(api_user["username"], api_user["password"])
    host.run_expect([0], f"runuser -u django -- sh -c 'echo kept > {OLD['media']}/{UPLOAD}'")
    moved = {
        "jwt_keys_file": MOVED_KEYRING,
        "postgresql_app_user": NEW["role"],
        "postgresql_app_database": NEW["database"],
        "app_user": NEW["account"],
        "app_group": NEW["account"],
        "app_media_root": NEW["media"],
    }
    try:
        result = _site({"jwt_keys_file": MOVED_KEYRING})
        assert result.returncode == 0, result.stdout[-4000:]
        assert site.get("/api/me/", token=tokens["access"]).status == 200

        result = _site_with_gunicorn_stopped(
            host,
            _rename("ROLE", OLD["role"], NEW["role"]),
            _rename("DATABASE", OLD["database"], NEW["database"]),
            f"mv {OLD['media']} {NEW['media']}",
            extra_vars=moved,
        )
        assert result.returncode == 0, result.stdout[-4000:]
        assert _gunicorn_accounts(host) == NEW["account"]
        env = host.file("/etc/drf-app/app.env").content_string
        assert f"DJANGO_JWT_KEYRING_FILE='{MOVED_KEYRING}'" in env
        assert f"DJANGO_DB_NAME='{NEW['database']}'" in env
        # Gunicorn's sandbox lets it write the new directory, and Django looks there.
        assert host.check_output("systemctl show --property ReadWritePaths --value gunicorn.service") == NEW["media"]
        read_upload = f'print(open(settings.MEDIA_ROOT + "/{UPLOAD}").read())'
        assert host.check_output(
            f"{MANAGE} shell -c {shlex.quote('from django.conf import settings; ' + read_upload)}"
        ).splitlines()[-1] == "kept"
        assert site.get("/api/me/", token=tokens["access"]).status == 200
        assert site.serves_me(api_user["username"], api_user["password"])
    finally:
        # Back, whatever got done (a step that did not happen fails here).
        host.run("systemctl stop gunicorn.socket gunicorn.service")
        host.run(_rename("DATABASE", NEW["database"], OLD["database"]))
        host.run(_rename("ROLE", NEW["role"], OLD["role"]))
        host.run(f"test -d {OLD['media']} || mv {NEW['media']} {OLD['media']}")
        result = _site()
        host.run(f"rm -rf {MOVED_KEYRING.rsplit('/', 1)[0]} {OLD['media']}/{UPLOAD}; userdel {NEW['account']}")
    assert result.returncode == 0, result.stdout[-4000:]
    assert _gunicorn_accounts(host) == OLD["account"]
    # The refresh token, unused until now, was signed before the keyring moved twice.
    assert site.post("/api/token/refresh/", {"refresh": tokens["refresh"]}).status == 200
