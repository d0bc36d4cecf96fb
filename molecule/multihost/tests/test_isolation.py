"""Who may talk to whom: PostgreSQL only to the app hosts and only over TLS,
Gunicorn only to the load balancer, and the client's address passed through
to Django from the load balancer alone."""
import json
import secrets

from conftest import APP_HOSTS, HOSTS

PSQL_AS_APP = (
    "set -a; . /etc/drf-app/app.env; set +a; "
    'PGPASSWORD="$DJANGO_DB_PASSWORD" PGCONNECT_TIMEOUT=5 psql --no-psqlrc --tuples-only '
    '"host={address} dbname=$DJANGO_DB_NAME user=$DJANGO_DB_USER sslmode={sslmode}" '
    "--command 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'"
)


def _tcp_connects(host, address, port):
    """Whether a TCP connection from `host` to address:port is accepted."""
    return host.run(f"timeout 4 bash -c 'exec 3<>/dev/tcp/{address}/{port}'").rc == 0


def test_requests_are_served_by_both_app_hosts(site):
    served_by = {site.get("/healthz").headers["X-Served-By"] for _ in range(20)}
    assert served_by == {HOSTS[part] for part in APP_HOSTS}


def test_postgresql_listens_on_its_private_address_and_loopback_only(hosts, addresses):
    lines = hosts["db"].check_output("ss --listening --tcp --numeric --no-header 'sport = :5432'")
    listening = {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in lines.splitlines()}
    assert listening == {addresses["db"], "127.0.0.1", "::1"}


def test_postgresql_admits_the_app_hosts_over_tls(hosts, addresses):
    for part in APP_HOSTS:
        result = hosts[part].run(PSQL_AS_APP.format(address=addresses["db"], sslmode="require"))
        assert result.rc == 0, result.stderr
        assert result.stdout.strip() == "t"


def test_postgresql_refuses_a_client_without_tls(hosts, addresses):
    result = hosts["app1"].run(PSQL_AS_APP.format(address=addresses["db"], sslmode="disable"))
    assert result.rc != 0
    assert "no encryption" in result.stderr or "rejects connection" in result.stderr, result.stderr


def test_postgresql_refuses_the_load_balancer(hosts, addresses):
    assert _tcp_connects(hosts["app1"], addresses["db"], 5432)
    assert not _tcp_connects(hosts["lb"], addresses["db"], 5432)


def test_gunicorn_listens_on_the_private_address(hosts, addresses):
    for part in APP_HOSTS:
        lines = hosts[part].check_output("ss --listening --tcp --numeric --no-header 'sport = :8000'")
        assert [line.split()[3] for line in lines.splitlines()] == [f"{addresses[part]}:8000"]


def test_gunicorn_refuses_the_database_host(hosts, addresses):
    for part in APP_HOSTS:
        assert _tcp_connects(hosts["lb"], addresses[part], 8000)
        assert not _tcp_connects(hosts["db"], addresses[part], 8000)


def test_only_the_load_balancer_takes_http_and_https(hosts, addresses):
    for port in (80, 443):
        assert _tcp_connects(hosts["db"], addresses["lb"], port)
        for part in ("db", "app1", "app2"):
            assert not _tcp_connects(hosts["lb"], addresses[part], port), (part, port)


def test_django_sees_the_client_address_the_load_balancer_saw(site, hosts):
    request_id = "isolation-" + secrets.token_hex(6)
    forged = "203.0.113.66"
    response = site.get("/healthz", headers={
        "X-Request-ID": request_id, "X-Forwarded-For": forged, "X-Real-IP": forged,
    })
    assert response.status == 200
    served_by = next(part for part in APP_HOSTS if HOSTS[part] == response.headers["X-Served-By"])

    access_log = hosts["lb"].check_output(f"grep -h 'request_id={request_id} ' /var/log/nginx/access.log")
    client_address = access_log.split()[0]
    journal = hosts[served_by].check_output(
        f"journalctl --unit gunicorn.service --output cat --no-pager | grep -F {request_id}"
    )
    (line,) = [json.loads(entry) for entry in journal.splitlines() if entry.startswith("{")]
    assert line["client_ip"] == client_address
    assert line["client_ip"] != forged


def test_connection_limit_covers_every_worker(hosts):
    workers = sum(
        int(hosts[part].check_output("sed -n 's/^workers = //p' /etc/drf-app/gunicorn.conf.py"))
        for part in APP_HOSTS
    )
    limit = int(hosts["db"].check_output(
        "runuser -u postgres -- psql --no-psqlrc --tuples-only --command 'SHOW max_connections'"
    ))
    # Old and new workers overlap during a graceful reload.
    assert limit >= 2 * workers
