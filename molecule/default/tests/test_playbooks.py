"""The playbooks themselves: check mode, bad input, secrets in the output."""
import base64
import hashlib
import json
import os
import re
import secrets
import shlex

import pytest
import yaml

from fixtures import release_independent
from playbook_checks import (  # noqa: F401
    assert_refused_before_any_change,
    test_check_mode_on_converged_hosts_changes_nothing,
)
from testlib import PROJECT_DIR, keyring_secrets, recap_counts, run_playbook, scenario_hosts, wait_until


# Wrong values, each with what the refusal must say, grouped by the check
# that refuses them: a check reports every wrong value it sees, so a group
# is one run (a run per value cost this scenario about 5 s each, 45 times).
# Values that change what another value's message says (the timeouts are
# checked against each other) are in different groups.
BAD_INPUT = [
    [("nginx_server_name", "", "domain name")],
    [("postgresql_app_password", "short", "at least 16 characters")],
    [("app_db_password", "short", "16 characters or more")],
    # Unquoted digits in YAML: a number, which has no length.
    [("app_db_password", 12345678901234567890, "quoted, if YAML would read it as a number")],
    [("nginx_tls_mode", "letsencrypt", "selfsigned")],
    [("nginx_client_max_body_size", "10 MB", "nginx's syntax")],
    [("postgresql_max_connections", "3", "at least 10")],
    # The app's names, paths, timeouts and token lifetimes.
    # (A timeout that is itself wrong is not compared with the next one.)
    [
        ("app_gunicorn_timeout", "0", "at least 1 second"),
        ("app_jwt_refresh_lifetime", 60, "no shorter than app_jwt_access_lifetime (300 s)"),
        ("app_media_root", "media", "absolute path"),
        ("app_backup_dir", "/srv/app/../../var/lib", "written plainly"),
    ],
    [
        ("app_migrate_lock_timeout", "25", "fewer than app_db_statement_timeout (25)"),
        # Accounts and directories the roles make the app's: root's shell
        # became nologin, / was chowned, a system directory went to django.
        ("app_user", "www-data", "not a system or service account"),
        ("app_db_host", "", "the directory of PostgreSQL's Unix socket"),
        ("app_db_user", "postgres", "not one of PostgreSQL's own"),
    ],
    [
        ("app_db_statement_timeout", "30", "fewer seconds than app_gunicorn_timeout (30)"),
        ("app_root", "/", "not a system one such as /, /srv"),
        ("app_media_root", "/etc", "not a system one such as /, /srv"),
    ],
    [("app_deploy_serial", "0", "a number of hosts (1 or more)")],
    # PostgreSQL's names, networks and limits. Addresses and networks are
    # parsed, not matched by a pattern; digits and dots alone would become
    # a certificate's IP entry. The role would make the cluster's superuser
    # NOSUPERUSER, or take over a database PostgreSQL keeps (and fail
    # mid-run on pg_ names).
    [
        ("postgresql_idle_in_transaction_timeout", "-1", "whole number of seconds"),
        ("postgresql_app_networks", ["127.0.0.1/32", "10.0.0.999/32"], "list of CIDR networks"),
        ("postgresql_listen_addresses", ["127.0.0.1", "db.example.com"], "list of IP addresses"),
        ("postgresql_tls_names", ["db.example.com", "10.0.0"], "host names and IP addresses"),
        ("postgresql_app_user", "postgres", "not one of PostgreSQL's own"),
        ("postgresql_app_database", "template1", "not one of PostgreSQL's own"),
    ],
    [("postgresql_app_user", "pg_monitor", "not one of PostgreSQL's own")],
    [
        ("app_trusted_proxies", ["10.0.0.256"], "list of IP addresses"),
        # A number given as text, as -e name=value gives it.
        ("app_db_port", "70000", "TCP port (1 to 65535)"),
    ],
    [
        ("firewall_ssh_sources", ["10.0.0.1/8"], "host bits zero"),
        # One address where a list belongs: each character became a source.
        ("firewall_allowed", [{"name": "metrics", "port": 9100, "sources": "10.0.0.5"}], "sources (a list of"),
    ],
    # Valid, but the next run could not connect: this one comes from
    # podman's gateway to sshd's port 22 (TEST-NET-1 is nobody's).
    [("firewall_ssh_sources", ["192.0.2.0/24"], "must include the address this run connects from")],
    [("firewall_ssh_port", 2200, "must be the port this run reached sshd on (22)")],
    [("base_app_user", "root", "not a system or service account")],
    [
        ("jwt_keys_group", "root", "not a system or service group"),
        ("jwt_keys_file", "/etc/keyring.json", "not a system one such as /etc"),
    ],
    # Not the group Gunicorn runs with: the app could not read its keys.
    [("jwt_keys_group", "api_keys", "must be the app's group, app_group")],
    [
        ("backup_dir", "/var/backups", "not a system one such as /, /var/backups"),
        # The copy command runs as root: "/" would undo its unit's
        # ProtectSystem=strict, /etc/... let it rewrite the configuration.
        # Only the path refused is named.
        ("backup_copy_writable_paths", ["/mnt/offsite", "/"],
         'such as /, /root or /var/lib, nor inside /etc, /usr, /boot, /run or /var/lib/postgresql (got ["/"])'),
    ],
    [("backup_copy_writable_paths", ["/etc/rclone"], "nor inside /etc, /usr")],
    # Two owners and modes for one directory, set back and forth; and
    # media the app may write to inside its own releases.
    [("app_media_root", "/srv/app/releases/uploads", "apart from its releases")],
    [("backup_dir", "/srv/app/media", "must be apart from the app's directories")],
    [("backup_copy_writable_paths", ["/srv/app"], "must be apart from the app's directories")],
    [("jwt_keys_file", "/srv/app/media/keyring.json", "in a directory apart from the app's")],
    # Written into nginx's configuration unquoted.
    [
        ("nginx_static_root", "/srv/my static", "without spaces, quotes"),
        ("nginx_hsts_max_age", "-5", "0 or more seconds"),
    ],
    # A second value for what the role sets would bypass its checks.
    [("app_extra_env", {"DJANGO_DB_HOST": "db.example.com"}, "set by the role; set app_db_host instead")],
    # A list has no text form to write into the environment file.
    [("app_extra_env", {"FEATURES": ["a", "b"]}, "value of FEATURES must be text or a number")],
    [("app_users", [{"username": "ops-a", "password": "p" * 16}, {"username": "ops-a", "password": "q" * 16}],
      "lists ops-a more than once")],
]


@pytest.mark.parametrize("cases", BAD_INPUT, ids=lambda cases: "+".join(case[0] for case in cases))
@release_independent
def test_bad_input_fails_before_any_change_and_names_the_variable(cases):
    result = run_playbook("site.yml", "-e", json.dumps({variable: value for variable, value, _ in cases}))
    refusals = re.findall(r"Action failed: (.*)", result.stdout + result.stderr)
    for variable, _, reason in cases:
        assert_refused_before_any_change(result, variable, reason)
        if len(cases) > 1:
            # Said of this variable, not of another one in the group.
            assert any(line.startswith(variable) and reason in line for line in refusals), (variable, refusals)


@release_independent
def test_a_run_limited_by_tags_still_checks_every_input_first():
    """--tags picks tasks by their tags: the checks, untagged, were
    skipped, and the nginx configuration was written with the bad size."""
    result = run_playbook("site.yml", "--tags", "nginx_configure",
                          "-e", json.dumps({"nginx_client_max_body_size": "10 MB"}))
    assert_refused_before_any_change(result, "nginx_client_max_body_size", "nginx's syntax")


@release_independent
def test_database_settings_other_than_the_servers_are_refused_unprinted(host):
    """The app must log in as the role the database server makes, to its
    database: with another name or password the run failed only at the
    release's migration check, after writing them into the app's
    environment file, where Gunicorn's next start would read them. The
    password is compared by digest; neither it nor its digest is printed,
    even with -vvv."""
    names = run_playbook("site.yml", "-e", json.dumps({"app_db_name": "api_other", "app_db_user": "api_other"}))
    # Both in one run: every wrong item is reported.
    for variable, server in (("app_db_name", "postgresql_app_database"), ("app_db_user", "postgresql_app_user")):
        assert_refused_before_any_change(names, variable, f"{variable} must be the {server} of the database server")
    # The callback wraps long messages.
    assert 'got "api_other"' in " ".join((names.stdout + names.stderr).split()), names.stderr[-3000:]
    given = "not-the-servers-" + secrets.token_hex(8)
    password = run_playbook("site.yml", "-vvv", "-e", json.dumps({"app_db_password": given}))
    assert_refused_before_any_change(password, "app_db_password",
                                     "app_db_password must be the postgresql_app_password of the database server")
    output = password.stdout + password.stderr
    for name, value in {"the given password": given, "the server's": _deployed_secrets(host)["DJANGO_DB_PASSWORD"]}.items():
        assert value not in output, f"{name} appears in the -vvv output"
        assert hashlib.sha256(value.encode()).hexdigest() not in output, f"{name}'s digest appears in the -vvv output"


@pytest.mark.parametrize(
    "variable, value, reason",
    [
        # Let through once, and then written letter by letter into
        # DJANGO_ALLOWED_HOSTS: every request answered 400.
        ("app_allowed_hosts", "api.example.com", "non-empty list of host names"),
        ("postgresql_listen_addresses", "127.0.0.1", "list of IP addresses"),
        ("postgresql_tls_names", "db.example.com", "list of host names and IP addresses"),
        ("base_packages", "htop", "list of Debian package names"),
    ],
)
@release_independent
def test_a_list_given_as_one_value_is_refused_before_any_change(variable, value, reason):
    """`name: value` in YAML, or `-e name=value`, where a list belongs:
    a string, whose every character would pass a per-item check."""
    result = run_playbook("site.yml", "-e", f"{variable}={value}")
    assert_refused_before_any_change(result, variable, reason)
    assert f'(got "{value}")' in result.stdout + result.stderr


@release_independent
def test_a_git_version_without_a_git_repository_is_refused():
    """This inventory deploys app_source_dir: asked for a git version, the
    run shipped the controller's files as the release, whatever the
    version, and succeeded."""
    for playbook in ("site.yml", "deploy.yml"):
        result = run_playbook(playbook, "-e", "app_git_version=v1.4.0")
        assert_refused_before_any_change(result, "app_git_version", "which is not set")
        assert "PLAY [Build the release on every app host]" not in result.stdout, playbook


@pytest.mark.parametrize(
    "variable, value, reason",
    [
        ("base_timezone", "Mars/Olympus_Mons", "/usr/share/zoneinfo"),
        ("base_locale", "xx_YY.UTF-8", "/usr/share/i18n/SUPPORTED"),
    ],
)
def test_names_the_host_does_not_know_are_refused_before_any_change(variable, value, reason):
    """Checked against the host's own lists, which differ between releases."""
    result = run_playbook("site.yml", "-e", json.dumps({variable: value}))
    assert_refused_before_any_change(result, variable, reason)


@release_independent
def test_an_inventory_without_a_database_group_is_refused_by_name(tmp_path):
    """Written by hand, an inventory may miss a group; the addresses the
    inventories derive from it failed with Jinja's "no attribute"."""
    name, connection = next(iter(scenario_hosts().items()))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({
        "all": {"hosts": {name: connection}},
        "appservers": {"hosts": {name: None}},
        "loadbalancers": {"hosts": {name: None}},
    }))
    result = run_playbook("site.yml", inventory=str(inventory))
    assert_refused_before_any_change(result, "dbservers", "missing or empty: dbservers")


@release_independent
def test_every_playbook_refuses_an_inventory_without_the_groups_or_one_that_does_not_parse(tmp_path):
    """Each playbook's plays name a group; without the groups each play
    skipped ("no hosts matched") and the run ended as a success that had
    done nothing: what a mistyped -i path gave too, which the project's
    ansible.cfg makes an error."""
    name, connection = next(iter(scenario_hosts().items()))
    ungrouped = tmp_path / "hosts.yml"
    ungrouped.write_text(yaml.safe_dump({"all": {"hosts": {name: connection}}}))
    playbooks = sorted(path for path in os.listdir(os.path.join(PROJECT_DIR, "playbooks")) if path.endswith(".yml"))
    assert {"site.yml", "deploy.yml", "backup.yml", "status.yml"} <= set(playbooks)
    for playbook in playbooks:
        result = run_playbook(playbook, inventory=str(ungrouped))
        assert_refused_before_any_change(result, "loadbalancers", "missing or empty: dbservers, appservers, loadbalancers")
        assert set(recap_counts(result.stdout)) == {"localhost"}, f"{playbook}: {result.stdout[-3000:]}"
    # With the project's ansible.cfg, as ops run from the repository.
    mistyped = run_playbook("deploy.yml", inventory=str(tmp_path / "no-such-inventory"), unset=("ANSIBLE_CONFIG",))
    assert mistyped.returncode != 0, mistyped.stdout[-3000:]
    assert "Completely failed to parse inventory source" in mistyped.stderr, mistyped.stderr[-3000:]


@release_independent
def test_a_second_database_host_is_refused_by_name(tmp_path):
    """A second host in dbservers would get a database of its own that no
    app host uses. Here it is another name for the scenario's host, added
    by a second inventory source, as an operator's extra file would."""
    connection = next(iter(scenario_hosts().values()))
    extra = tmp_path / "extra.yml"
    extra.write_text(yaml.safe_dump({"dbservers": {"hosts": {"second-database": connection}}}))
    result = run_playbook("site.yml", "-i", str(extra))
    assert_refused_before_any_change(result, "dbservers", "this stack runs one PostgreSQL server")


@release_independent
def test_extra_environment_given_as_one_value_is_refused_without_printing_it():
    """`-e app_extra_env=NAME=value`: a string, which the role's loops over
    its names failed on without naming it; the value may be a secret."""
    result = run_playbook("site.yml", "-e", "app_extra_env=SENTRY_DSN=https://s3cret-dsn-key@sentry.example.com/1")
    assert_refused_before_any_change(result, "app_extra_env", "mapping of variable names to values")
    assert "s3cret-dsn-key" not in result.stdout + result.stderr


@release_independent
def test_a_refused_index_url_does_not_print_its_password():
    result = run_playbook("site.yml", "-e", "app_pip_index_url=ftp://deploy:s3cret-index-pw@pypi.example.com/simple")
    assert_refused_before_any_change(result, "app_pip_index_url", "http(s) URL")
    assert "s3cret-index-pw" not in result.stdout + result.stderr


@release_independent
def test_a_connection_limit_below_the_app_workers_is_refused():
    # 60 workers hold 60 connections, 120 while a reload overlaps old and
    # new ones: PostgreSQL's 100 would answer "too many clients".
    result = run_playbook("site.yml", "-e", '{"app_gunicorn_workers": 60, "postgresql_max_connections": 100}')
    assert_refused_before_any_change(result, "postgresql_max_connections", "130 for 60 workers")


@release_independent
def test_a_refusal_names_each_wrong_variable_and_no_other():
    """Two wrong values checked by the same task: both are reported, each
    with the value it got, and the right ones beside them are not blamed."""
    result = run_playbook("site.yml", "-e", '{"app_gunicorn_workers": 0, "app_gunicorn_timeout": 0}')
    assert_refused_before_any_change(result, "app_gunicorn_workers", "(got 0)")
    refusals = re.findall(r"Action failed: (.*)", result.stdout + result.stderr)
    assert any(line.startswith("app_gunicorn_workers must") for line in refusals), refusals
    assert any(line.startswith("app_gunicorn_timeout must") for line in refusals), refusals
    for right in ("app_allowed_hosts", "app_root", "app_gunicorn_max_requests"):
        assert not any(right in line for line in refusals), refusals


@pytest.mark.parametrize(
    "variable, value, reason, derived",
    [
        ("postgresql_port", "70000", "TCP port (1 to 65535)", "app_db_port"),
        ("postgresql_app_database", "Bad-Name", "lower-case SQL identifier", "app_db_name"),
        ("app_user", "Django User", "POSIX user name", "base_app_user"),
        ("app_root", "/srv/my api", "absolute path without spaces", "app_media_root"),
    ],
)
@release_independent
def test_a_bad_value_is_named_as_set_and_not_as_what_derives_from_it(variable, value, reason, derived):
    """The inventories derive some variables from others (app_db_port and
    backup_port from postgresql_port, base_app_user from app_user): the
    refusal names the variable the user set, and only that one."""
    result = run_playbook("site.yml", "-e", json.dumps({variable: value}))
    assert_refused_before_any_change(result, variable, reason)
    refusals = re.findall(r"Action failed: (.*)", result.stdout + result.stderr)
    assert refusals and all(line.startswith(f"{variable} must") for line in refusals), refusals
    assert derived not in " ".join(refusals)


def _assert_check_mode_refused_plainly(reason):
    """site.yml --check stopped in the pre-flight play, saying why and what
    to do, before any role ran and with nothing changed."""
    result = run_playbook("site.yml", "--check")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "Check mode cannot preview" in output and reason in output, output[-3000:]
    assert "A run without --check" in output
    assert all(count["changed"] == 0 for count in recap_counts(result.stdout).values())
    assert "TASK [base : Install common packages]" not in output


def test_check_mode_on_a_host_never_set_up_is_refused_plainly(host):
    """Without python3-apt (what a fresh Debian lacks until base's first run)
    check mode would fail at the first package with apt's own error; it is
    refused in the pre-flight play instead, saying why and what to do."""
    host.run_expect([0], "cd /root && apt-get download -qq python3-apt")
    host.run_expect([0], "dpkg --remove --force-depends python3-apt")
    try:
        _assert_check_mode_refused_plainly("lacks python3-apt")
    finally:
        host.run_expect([0], "dpkg --install /root/python3-apt_*.deb && rm /root/python3-apt_*.deb")
    assert host.package("python3-apt").is_installed


@release_independent
def test_check_mode_on_a_host_whose_set_up_never_finished_is_refused_plainly(host):
    """A host whose first runs stopped part-way (say, the package index was
    unreachable) has python3-apt but not what later tasks look at; only a
    run of site.yml that reached its end leaves the record check mode
    trusts, and the next full run writes it again."""
    record = "/etc/ansible/facts.d/drf_site.fact"
    assert host.file(record).content_string.strip() == '{"completed": true}'
    host.run_expect([0], f"rm {record}")
    try:
        _assert_check_mode_refused_plainly("no run of site.yml has finished")
    finally:
        finished = run_playbook("site.yml")
    assert finished.returncode == 0, finished.stdout[-3000:]
    assert host.file(record).mode == 0o644 and host.file(record).user == "root"


def _deployed_secrets(host):
    """{name: value} of every secret the deploy handles: the app's, the
    keyring's and the inventory's API user's password."""
    env = dict(
        line.split("=", 1)
        for line in host.check_output("cat /etc/drf-app/app.env").splitlines()
        if "=" in line and not line.startswith("#")
    )
    values = {
        name: env[name].strip("'")
        for name in ("DJANGO_SECRET_KEY", "DJANGO_DB_PASSWORD")
    }
    values.update(keyring_secrets(host))
    demo_password = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory", ".secrets", "demo_password")
    with open(demo_password, encoding="utf-8") as secret:
        values["app_users password"] = secret.read().rstrip("\n")
    for name, value in values.items():
        assert len(value) >= 16, name
    return values


def test_no_secret_appears_in_the_ansible_output(host):
    log_path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "ansible.log")
    with open(log_path, encoding="utf-8") as log_file:
        log = log_file.read()
    assert "PLAY RECAP" in log and "Run the app" in log
    for name, value in _deployed_secrets(host).items():
        assert value not in log, f"{name} appears in the Ansible output"


# Run as root on the host, with the secrets, one per line and base64-coded
# (so that no command line holds them), as its first argument: the files
# that hold one on the host's own filesystems, and the command lines of its
# processes, which anyone may read; a file is listed with "readable" when
# the nobody account can read it, which takes every directory above it too.
_FIND_SECRETS = r"""
set -eu
patterns=$(mktemp)
trap 'rm -f "$patterns"' EXIT
echo "$1" | base64 -d > "$patterns"
grep -rlsF -D skip -f "$patterns" / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev \
    | grep -vxF "$patterns" | while read -r path; do
    if runuser -u nobody -- test -r "$path"; then echo "readable $path"; else echo "private $path"; fi
done
for cmdline in /proc/[0-9]*/cmdline; do
    tr '\0' ' ' < "$cmdline" 2>/dev/null | grep -qF -f "$patterns" && echo "readable $cmdline"
done
true
"""


def test_no_secret_is_in_a_file_others_can_read(host):
    """Each secret the deploy handles, searched for on the whole host: it
    is only in files no other account can read (the app's environment
    file, the keyring), and on no process's command line."""
    values = _deployed_secrets(host)
    coded = base64.b64encode("\n".join(values.values()).encode()).decode()
    found = host.run_expect([0], f"bash -c {shlex.quote(_FIND_SECRETS)} find-secrets {coded}").stdout.split("\n")
    holders = dict(line.split(" ", 1)[::-1] for line in found if line)
    # The search finds what it looks for: the environment file holds two.
    assert holders.get("/etc/drf-app/app.env") == "private", found
    assert [path for path, access in holders.items() if access == "readable"] == [], found


@release_independent
def test_no_secret_appears_in_verbose_output(host):
    """Ops debug with -vvv, which prints every task's result, loop items
    included (the checks of app_users and app_extra_env once printed each
    user's password and each extra variable's value), and each module's
    arguments; and preview with --check --diff, which prints the lines a
    file would change."""
    extra_secret = "sk_test_" + secrets.token_hex(16)
    runs = [
        run_playbook("site.yml", "-vvv"),
        # A value of app_extra_env may be a secret too (a third-party API
        # key); in check mode, so that the host keeps its environment, and
        # with --diff, which would print the environment file's change.
        run_playbook("site.yml", "-vvv", "--check", "--diff",
                     "-e", json.dumps({"app_extra_env": {"THIRD_PARTY_API_KEY": extra_secret}})),
    ]
    for result in runs:
        assert result.returncode == 0, result.stdout[-3000:]
        output = result.stdout + result.stderr
        assert "task path:" in output
        for name, value in {**_deployed_secrets(host), "app_extra_env value": extra_secret}.items():
            assert value not in output, f"{name} appears in the -vvv output"


@release_independent
def test_a_run_without_makes_environment_changes_nothing(host):
    """Ops also run ansible-playbook by hand, without the variables the
    Makefile exports: the inventory alone must describe the host. (The demo
    inventory once read EXTRA_CA_BUNDLE only from make, and such a run took
    the proxy's CA away again.)"""
    result = run_playbook("site.yml", unset=("EXTRA_CA_BUNDLE",))
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(count["changed"] == 0 for count in recap_counts(result.stdout).values()), result.stdout[-3000:]


def test_base_puts_back_a_drifted_time_zone_and_time_sync(host):
    """base reads the time zone and timesyncd's state once and runs the two
    modules only for what drifted: the check must see real drift."""
    host.run_expect([0], "ln -sf /usr/share/zoneinfo/Europe/Berlin /etc/localtime"
                         " && systemctl disable --quiet systemd-timesyncd")
    result = run_playbook("site.yml", "--tags", "base_configure")
    assert result.returncode == 0, result.stdout[-3000:]
    assert sum(count["changed"] for count in recap_counts(result.stdout).values()) == 2
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"
    assert host.service("systemd-timesyncd").is_enabled


def test_postgresql_remakes_a_damaged_self_signed_certificate(host):
    """The crypto modules run only when the key and certificate differ from
    their record (tasks/tls.yml); damage must still reach them."""
    conf = host.check_output("ls -d /etc/postgresql/*/main")
    key, cert = f"{conf}/server.key", f"{conf}/server.crt"
    host.run_expect([0], f"chmod 0640 {key} && rm {cert}")
    result = run_playbook("site.yml", "--tags", "postgresql_tls")
    assert result.returncode == 0, result.stdout[-3000:]
    assert host.file(key).mode == 0o600
    assert host.check_output(f"openssl x509 -noout -pubkey -in {cert}") == host.check_output(
        f"openssl pkey -pubout -in {key}")
    # The reload handler ran: PostgreSQL serves TLS with the new certificate.
    served = host.check_output(
        f"echo | openssl s_client -starttls postgres -connect 127.0.0.1:5432 2>/dev/null"
        f" | openssl x509 -noout -fingerprint -sha256")
    assert served == host.check_output(f"openssl x509 -noout -fingerprint -sha256 -in {cert}")
    again = run_playbook("site.yml", "--tags", "postgresql_tls")
    assert sum(count["changed"] for count in recap_counts(again.stdout).values()) == 0, again.stdout[-3000:]


def test_a_session_limit_change_reloads_postgresql_and_ends_an_idle_transaction(host):
    """Session limits live in their own file, whose changes reload the
    server: a changed idle-in-transaction timeout restarts nothing, and a
    session left idle inside a transaction is then ended, its lock freed."""
    psql = "runuser -u postgres -- psql --no-psqlrc -At -d app -c"
    started = host.check_output(f"{psql} 'SELECT pg_postmaster_start_time()'")
    assert host.check_output(f"{psql} 'SHOW idle_in_transaction_session_timeout'") == "1min"
    name = "drf-test-idle"
    state = f"SELECT coalesce(string_agg(state, ','), 'gone') FROM pg_stat_activity WHERE application_name = '{name}'"
    try:
        result = run_playbook("site.yml", "--tags", "postgresql_configure",
                              "-e", '{"postgresql_idle_in_transaction_timeout": 3}')
        assert result.returncode == 0, result.stdout[-3000:]
        assert host.check_output(f"{psql} 'SHOW idle_in_transaction_session_timeout'") == "3s"
        assert host.check_output(f"{psql} 'SELECT pg_postmaster_start_time()'") == started
        # A shell that took a lock in a transaction, then waits on its user.
        session = "{ echo 'BEGIN; LOCK TABLE auth_user IN ACCESS SHARE MODE;'; sleep 60; }" \
                  " | runuser -u postgres -- psql --no-psqlrc -d app"
        host.run_expect([0], f"systemd-run --unit {name} --setenv PGAPPNAME={name} bash -c {shlex.quote(session)}")
        assert wait_until(lambda: host.check_output(f"{psql} {shlex.quote(state)}") == "idle in transaction", 10)
        assert wait_until(lambda: host.check_output(f"{psql} {shlex.quote(state)}") == "gone", 10)
        host.run_expect([0], f"{psql} \"BEGIN; SET LOCAL lock_timeout = '1s';"
                             " LOCK TABLE auth_user IN ACCESS EXCLUSIVE MODE; COMMIT\"")
    finally:
        host.run(f"systemctl stop {name}")
        restored = run_playbook("site.yml", "--tags", "postgresql_configure")
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert host.check_output(f"{psql} 'SHOW idle_in_transaction_session_timeout'") == "1min"


def test_postgresql_cancels_a_statement_whose_client_is_gone(host):
    """A killed client's statement is cancelled within
    client_connection_check_interval (10 s), not run to its end (120 s)."""
    psql = "runuser -u postgres -- psql --no-psqlrc -At -d app -c"
    name = "drf-test-gone"
    running = f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{name}' AND state = 'active'"
    host.run_expect([0], f"systemd-run --unit {name} --setenv PGAPPNAME={name} {psql} 'SELECT pg_sleep(120)'")
    try:
        assert wait_until(lambda: host.check_output(f"{psql} {shlex.quote(running)}") == "1", 10)
        host.run_expect([0], f"systemctl kill --signal=SIGKILL {name}")
        assert wait_until(lambda: host.check_output(f"{psql} {shlex.quote(running)}") == "0", 15)
    finally:
        host.run(f"{psql} \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 f" WHERE application_name = '{name}'\"; systemctl stop {name}")
