"""What runs on the host, where it listens, and how it recovers."""
import json
import re
import subprocess

import pytest

from fixtures import MANAGE
from testlib import booted, gunicorn_main_pid, recap_counts, run_playbook, wait_until


@pytest.mark.parametrize(
    "unit", ["postgresql.service", "gunicorn.socket", "gunicorn.service", "nginx.service"]
)
def test_service_is_active_and_enabled(host, unit):
    service = host.service(unit)
    assert service.is_running or host.run(f"systemctl is-active {unit}").stdout.strip() == "active"
    assert service.is_enabled


def _tcp_listeners(host):
    """(address, port, process) for every listening TCP socket on the host."""
    output = host.check_output("ss -Hltnp")
    listeners = []
    for line in output.splitlines():
        fields = line.split()
        address, port = fields[3].rsplit(":", 1)
        process = re.search(r'users:\(\("([^"]+)"', line)
        listeners.append((address.strip("[]"), int(port), process.group(1) if process else ""))
    return listeners


def test_postgresql_listens_on_loopback_only(host):
    addresses = {address for address, port, _ in _tcp_listeners(host) if port == 5432}
    assert addresses, "PostgreSQL is not listening on TCP at all"
    assert addresses <= {"127.0.0.1", "::1"}
    assert host.file("/run/postgresql/.s.PGSQL.5432").is_socket


def test_nothing_but_ssh_http_and_https_is_reachable_from_outside(host):
    exposed = {
        (port, process)
        for address, port, process in _tcp_listeners(host)
        if address not in {"127.0.0.1", "::1"}
    }
    assert {port for port, _ in exposed} == {22, 80, 443}
    assert not any("gunicorn" in process or "python" in process for _, process in exposed)


def test_gunicorn_listens_on_its_unix_socket_only(host):
    assert host.socket("unix:///run/gunicorn/gunicorn.sock").is_listening
    assert not any(
        "gunicorn" in process or "python" in process
        for _, _, process in _tcp_listeners(host)
    )
    socket_file = host.file("/run/gunicorn/gunicorn.sock")
    assert socket_file.group == "www-data"
    assert socket_file.mode == 0o660


def test_env_file_is_root_owned_and_app_group_only(host):
    env_file = host.file("/etc/drf-app/app.env")
    assert env_file.user == "root"
    assert env_file.group == "django"
    # 0640 or tighter: nothing for others, no writing for the group.
    assert env_file.mode & 0o027 == 0


def test_tls_private_key_is_readable_by_root_only(host):
    domain = host.ansible("debug", "var=nginx_server_name")["nginx_server_name"]
    key = host.file(f"/etc/nginx/tls/{domain}.key")
    assert key.user == "root"
    assert key.mode & 0o077 == 0


def test_no_migration_is_left_unapplied(host):
    plan = host.check_output(f"{MANAGE} showmigrations --plan")
    assert "[X]" in plan
    assert "[ ]" not in plan


def test_check_deploy_passes_without_warnings(host):
    result = host.run(f"{MANAGE} check --deploy --fail-level WARNING")
    assert result.rc == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_gunicorn_comes_back_after_sigkill(host, site):
    old_pid = gunicorn_main_pid(host)
    assert old_pid > 0
    host.run_expect([0], f"kill -KILL {old_pid}")

    def restarted():
        state = host.run("systemctl is-active gunicorn.service").stdout.strip()
        return state == "active" and gunicorn_main_pid(host) not in (0, old_pid)

    assert wait_until(restarted, timeout=10), "gunicorn did not come back within 10 s"
    assert site.get("/healthz").status == 200


@pytest.mark.parametrize(
    "unit, most", [("gunicorn.service", 2.0), ("drf-backup.service", 2.0), ("drf-flush-tokens.service", 2.0)]
)
def test_service_sandbox_exposure(host, unit, most):
    # systemd's own rating of the unit's sandbox (0 = locked down, 10 = none).
    report = host.check_output(f"systemd-analyze security --no-pager {unit}")
    level = float(re.search(rf"Overall exposure level for {re.escape(unit)}: ([0-9.]+)", report).group(1))
    print(f"{unit}: exposure {level}")
    assert level <= most


def test_app_database_role_is_least_privileged(host):
    def query(sql):
        return host.check_output(
            f"runuser -u postgres -- psql --no-psqlrc --tuples-only --no-align --dbname app --command \"{sql}\""
        ).strip()

    app_role = query("SELECT datdba::regrole FROM pg_database WHERE datname = current_database()")
    assert query(
        f"SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls "
        f"FROM pg_roles WHERE rolname = '{app_role}'"
    ) == "f|f|f|f|f"
    # It owns its own database and nothing else.
    assert query(f"SELECT string_agg(datname, ',') FROM pg_database WHERE datdba = '{app_role}'::regrole") == "app"
    assert query("SHOW password_encryption") == "scram-sha-256"
    assert query(f"SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = '{app_role}'") == "t"


def test_a_rerun_starts_a_database_that_went_down(host, site, api_user):
    """Debian's postgresql.service is an umbrella that stays active while its
    cluster is down (stopped, or failed on a configuration since corrected):
    site.yml starts the cluster itself, and the API answers again."""
    cluster = host.check_output("systemctl list-units --all --plain --no-legend 'postgresql@*-main.service'").split()[0]
    host.run_expect([0], f"systemctl stop {cluster}")
    try:
        assert host.run("systemctl is-active postgresql.service").stdout.strip() == "active"
        result = run_playbook("site.yml")
        assert result.returncode == 0, result.stdout[-4000:]
        assert host.service(cluster).is_running
        assert site.serves_me(api_user["username"], api_user["password"])
    finally:
        host.run(f"systemctl start {cluster}")


def test_nginx_serves_static_files_from_the_app_root_the_inventory_sets(host):
    """nginx's static root follows app_root (topology.yml): shown by what a
    check-mode run would write into nginx's configuration."""
    result = run_playbook("site.yml", "--check", "--diff", "--tags", "nginx_configure",
                          "-e", json.dumps({"app_root": "/srv/api"}))
    assert result.returncode == 0, result.stdout[-4000:]
    assert re.search(r"^\+\s*alias /srv/api/current/static/;", result.stdout, re.MULTILINE), result.stdout[-4000:]


def test_everything_comes_back_after_a_reboot(host, site, api_user):
    """Restarting the container reboots the server: systemd starts from
    nothing and /run is empty. Every service comes back by itself, with no
    unit failed; a token issued before still works (the keyring is on disk);
    and site.yml then finds nothing to change (nothing it set up lived in
    /run alone)."""
    tokens = site.obtain_tokens(api_user["username"], api_user["password"])
    marker = "/run/test-reboot-marker"
    host.run_expect([0], f"touch {marker}")
    subprocess.run(["podman", "restart", "--time", "30", host.backend.get_hostname()], check=True, capture_output=True)
    assert wait_until(lambda: booted(host), timeout=120)
    assert not host.file(marker).exists
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state == "running", host.run("systemctl --failed --no-pager").stdout
    assert "table inet drf_firewall" in host.check_output("nft list tables")
    # Debian 13 remakes /etc/default/locale at boot as a link to /etc/locale.conf.
    assert host.check_output(". /etc/default/locale && echo $LANG") == "en_US.UTF-8"
    for unit in ("postgresql.service", "gunicorn.socket", "nginx.service", "drf-backup.timer"):
        assert host.service(unit).is_running, unit
    assert site.get("/api/me/", token=tokens["access"]).json()["username"] == api_user["username"]
    result = run_playbook("site.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(count["changed"] == 0 for count in recap_counts(result.stdout).values()), result.stdout[-3000:]
