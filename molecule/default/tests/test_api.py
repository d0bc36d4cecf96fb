"""The API contract (molecule/_shared/api_contract.py) on the one-host
layout, and what only this layout can show: the database stopped or
restarted under the app, static files from the release on disk."""
import json
import secrets
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import pytest

from api_contract import *  # noqa: F401,F403
from fixtures import MANAGE, make_api_user, release_independent
from testlib import Response, database_answers, recap_counts, run_playbook, table_locked, wait_until


def test_while_the_database_is_down_the_api_answers_503(host, site, tokens, api_user):
    host.run_expect([0], "systemctl stop postgresql")
    try:
        assert wait_until(lambda: not database_answers(host), timeout=30)
        response = site.get("/readyz")
        assert response.status == 503
        assert response.json()["database"] == "down"
        assert site.get("/healthz").status == 200
        # Not the app's fault, and worth retrying: a JSON 503 with
        # Retry-After, not a 500, for a request and a login alike.
        for response in (
            site.get("/api/me/", token=tokens["access"]),
            site.post("/api/token/", {"username": api_user["username"], "password": api_user["password"]}),
        ):
            _assert_json_error(response, 503)
            assert int(response.headers["Retry-After"]) > 0
    finally:
        host.run_expect([0], "systemctl start postgresql")
    assert wait_until(lambda: database_answers(host), timeout=30)
    assert wait_until(lambda: site.get("/readyz").status == 200, timeout=10)


def test_no_request_fails_after_a_database_restart(host, site, tokens):
    # Every Gunicorn worker keeps its database connection between requests;
    # a restart closes them all. The health check (config/postgresql) must
    # replace each before its worker's next request uses it.
    def statuses():
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda _: site.get("/api/me/", token=tokens["access"]).status, range(80)))

    assert set(statuses()) == {200}  # every worker now holds a connection
    host.run_expect([0], "systemctl restart postgresql")
    assert wait_until(lambda: database_answers(host), timeout=30)
    assert set(statuses()) == {200}


def _gunicorn_environment(host):
    return host.check_output("systemctl show gunicorn.service --property Environment --value").split()


def test_a_query_stuck_past_the_statement_timeout_ends_as_a_500(host, site, tokens):
    # The role's default: five sixths of the 30 s worker timeout, for the
    # web workers only.
    assert "DJANGO_DB_STATEMENT_TIMEOUT=25" in _gunicorn_environment(host)
    assert "DJANGO_DB_STATEMENT_TIMEOUT" not in host.file("/etc/drf-app/app.env").content_string
    # A short limit for this test (a drop-in under /run, gone at reboot),
    # and a transaction that holds the users table: the request's user query
    # waits for the lock until PostgreSQL cancels it, and the worker answers
    # a 500 instead of being killed by Gunicorn's timeout.
    dropin = "/run/systemd/system/gunicorn.service.d/test-statement-timeout.conf"
    rid = "test-" + secrets.token_hex(8)
    host.run_expect([0], f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Service]\\nEnvironment=DJANGO_DB_STATEMENT_TIMEOUT=2\\n'"
                    f" > {dropin} && systemctl daemon-reload && systemctl restart gunicorn.service")
    try:
        assert "DJANGO_DB_STATEMENT_TIMEOUT=2" in _gunicorn_environment(host)
        with table_locked(host, "auth_user", "ACCESS EXCLUSIVE"):
            started = time.monotonic()
            response = site.get("/api/me/", token=tokens["access"], headers={"X-Request-ID": rid})
            waited = time.monotonic() - started
        _assert_json_error(response, 500)
        assert 2 <= waited < 10, waited
        journal = f"journalctl -u gunicorn.service -n 500 --no-pager -o cat | grep -F {rid}"
        assert wait_until(lambda: "canceling statement due to statement timeout" in host.run(journal).stdout,
                          timeout=10)
    finally:
        host.run(f"rm -f {dropin} && systemctl daemon-reload && systemctl restart gunicorn.service")
    assert "DJANGO_DB_STATEMENT_TIMEOUT=25" in _gunicorn_environment(host)
    assert site.get("/api/me/", token=tokens["access"]).status == 200


def test_a_new_password_set_by_the_deploy_ends_the_old_sessions(host, site):
    # As when ops reset a leaked password through app_users (ensure_user).
    user = make_api_user(host)
    tokens = site.obtain_tokens(user["username"], user["password"])
    password = secrets.token_urlsafe(18)
    result = host.run(f"DJANGO_ENSURE_USER_PASSWORD={password} {MANAGE} ensure_user {user['username']}")
    assert result.rc == 0 and result.stdout.split()[-1] == "updated", result.stderr
    assert site.get("/api/me/", token=tokens["access"]).status == 401
    assert site.post("/api/token/refresh/", {"refresh": tokens["refresh"]}).status == 401
    site.obtain_tokens(user["username"], password)


@release_independent
def test_a_user_set_absent_is_locked_out_at_once_and_their_row_kept(host, site):
    """What ops do when someone leaves: app_users with state absent."""
    user = make_api_user(host)
    tokens = site.obtain_tokens(user["username"], user["password"])
    absent = json.dumps({"app_users": [{"username": user["username"], "state": "absent"}]})
    result = run_playbook("site.yml", "-e", absent)
    assert result.returncode == 0, result.stdout[-3000:]
    assert sum(count["changed"] for count in recap_counts(result.stdout).values()) == 1
    # No waiting for the access token to expire, no new login.
    assert site.get("/api/me/", token=tokens["access"]).status == 401
    assert site.post("/api/token/refresh/", {"refresh": tokens["refresh"]}).status == 401
    assert site.post("/api/token/", {"username": user["username"], "password": user["password"]}).status == 401
    query = f"SELECT is_active FROM auth_user WHERE username = '{user['username']}'"
    assert host.check_output(f"runuser -u postgres -- psql -d app -tAc {shlex.quote(query)}") == "f"
    again = run_playbook("site.yml", "-e", absent)
    assert again.returncode == 0 and all(count["changed"] == 0 for count in recap_counts(again.stdout).values())


def _assert_json_error(response, status):
    assert_json_error(response, status)  # noqa: F405 (from api_contract)
    # On HTTPS, with the security headers of every response.
    assert response.headers["Strict-Transport-Security"]


def _headers_only(site, method, path, headers):
    """Send a request's headers, exactly as given, and no body."""
    connection = site.connection()
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        raw = connection.getresponse()
        return Response(raw.status, raw.headers, raw.read())
    finally:
        connection.close()


@pytest.mark.parametrize(
    "headers, status, detail",
    [
        # nginx answers from the Content-Length alone (10m allowed), before
        # any of the body is sent.
        ([("Content-Type", "application/json"), ("Content-Length", str(11 * 1024 * 1024))],
         413, "10m"),
        ([("Host", "another.example")], 400, "malformed"),
    ],
)
def test_nginx_answers_requests_it_refuses_with_json(site, headers, status, detail):
    response = _headers_only(site, "POST", "/api/me/", [("Host", site.domain)] + headers)
    _assert_json_error(response, status)
    assert detail in response.json()["detail"]


@pytest.mark.parametrize("path", ["/api/token", "/api/token/refresh", "/api/me"])
def test_a_path_without_its_slash_is_redirected_to_the_same_site_keeping_the_method(site, path):
    # The token paths are nginx's redirects, /api/me Django's. A 308, which
    # clients follow with the same POST and body (a 301 becomes a GET). The
    # tests reach nginx through a published port, as clients do behind a
    # port mapping: the Location must not name another.
    response = site.post(f"{path}?next=1", {})
    assert response.status == 308
    origin = f"https://{site.domain}:{site.https_port}"
    assert urljoin(origin + path, response.headers["Location"]) == f"{origin}{path}/?next=1"


def test_a_login_posted_without_the_slash_succeeds_once_redirected(site, api_user):
    response = site.post("/api/token", api_user)
    assert response.status == 308
    assert site.post(response.headers["Location"], api_user).status == 200


def test_plain_http_to_the_https_port_is_answered_with_json_400(site):
    response = site.plain_http("GET", "/api/me/", port=site.https_port)
    _assert_json_error(response, 400)
    assert "HTTPS only" in response.json()["detail"]


def test_a_long_url_over_http2_reaches_the_app(host):
    # HTTP/2 compresses header fields, so nginx passes a longer URL than over
    # HTTP/1.1 (where it answers 414): Gunicorn must take it too.
    url = "https://localhost/" + "a" * 12000
    output = host.check_output(
        "curl --silent --http2 --cacert /etc/nginx/tls/localhost.crt "
        f"--write-out '\\n%{{http_version}} %{{http_code}} %{{content_type}}' {url}"
    )
    body, outcome = output.rsplit("\n", 1)
    assert outcome == "2 404 application/json"
    assert json.loads(body) == {"detail": "Not found."}


@pytest.mark.parametrize("http_version", ["--http1.1", "--http2"])
@pytest.mark.parametrize(
    "size, detail",
    [
        # Over nginx's limit (10m): nginx refuses it. Over HTTP/2 nginx
        # answered its HTML page here (nginx/nginx#1356).
        (11 * 1024 * 1024, "the limit is 10m."),
        # Under nginx's limit, over what Django reads into memory (2.5 MB).
        (3 * 1024 * 1024, "the limit is 2621440 bytes."),
    ],
)
def test_a_body_too_large_is_413_with_json_over_either_http_version(host, http_version, size, detail):
    # Sent whole, without Expect: 100-continue, as most clients send JSON.
    output = host.check_output(
        f"head -c {size} /dev/zero | tr '\\0' a | curl --silent {http_version} "
        "--cacert /etc/nginx/tls/localhost.crt -H 'Content-Type: application/json' -H 'Expect:' "
        "--data-binary @- --write-out '\\n%{http_code} %{content_type}' https://localhost/api/token/verify/"
    )
    body, outcome = output.rsplit("\n", 1)
    assert outcome == "413 application/json"
    assert json.loads(body)["detail"].endswith(detail)


def test_a_body_the_app_never_reads_does_not_turn_its_answer_into_a_502(host):
    # Refused without a token, so nobody reads the 8 MB. Before the app read
    # such bodies to their end, one in seven to one in four of these was a 502.
    output = host.check_output(
        "head -c 8000000 /dev/zero | tr '\\0' a > /tmp/unread-body && "
        "for i in $(seq 20); do curl --silent --http2 --cacert /etc/nginx/tls/localhost.crt "
        "-H 'Content-Type: application/json' -H 'Expect:' --data-binary @/tmp/unread-body "
        "--output /dev/null --write-out '%{http_code}\\n' https://localhost/api/me/; done; "
        "rm -f /tmp/unread-body"
    )
    assert output.split() == ["401"] * 20


def _a_static_css_file(host):
    # DRF ships static files; collectstatic put them where nginx serves them.
    path = host.check_output("find /srv/app/current/static/ -name '*.css' -printf '%P\\n' -quit")
    assert path
    return path


def test_static_file_errors_are_json(host, site):
    path = _a_static_css_file(host)
    for method, url, status in [
        ("GET", "/static/no-such-file.css", 404),
        ("POST", f"/static/{path}", 405),
        ("GET", "/static/", 403),  # no directory listings
    ]:
        _assert_json_error(site.request(method, url), status)


def test_a_probe_asked_with_another_method_is_json_405(site):
    # Through Django's CSRF check, which must not answer first.
    response = site.post("/readyz")
    _assert_json_error(response, 405)
    assert response.headers["Allow"] == "GET"


def test_nginx_answers_with_json_502_while_gunicorn_is_stopped(host, site):
    host.run_expect([0], "systemctl stop gunicorn.socket gunicorn.service")
    try:
        _assert_json_error(site.get("/api/me/"), 502)
    finally:
        host.run_expect([0], "systemctl start gunicorn.socket gunicorn.service")
    assert wait_until(lambda: site.get("/readyz").status == 200, timeout=30)


def test_static_files_are_served_by_nginx(host, site):
    path = _a_static_css_file(host)
    response = site.get(f"/static/{path}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/css"


@pytest.mark.parametrize(
    "path, flood, flood_status, probe, probe_status",
    [
        # Without a password, so that the requests nginx lets through are
        # answered 400 at once instead of each costing a password hash: the
        # limit, not the hasher, is under test.
        ("/api/token/", {"username": "nobody"}, 400,
         {"username": "nobody", "password": "not-the-password"}, 401),
        ("/api/token/refresh/", {"refresh": "garbage"}, 401, {"refresh": "garbage"}, 401),
    ],
)
def test_token_requests_beyond_the_rate_get_429_while_other_clients_pass(
    host, site, path, flood, flood_status, probe, probe_status
):
    # The limit must have let this machine go from an earlier run.
    assert wait_until(lambda: site.post(path, probe).status == probe_status, timeout=10)
    # Far more than 10/s (and the burst of 20) from this machine: 40 at once.
    with ThreadPoolExecutor(max_workers=40) as pool:
        responses = list(pool.map(lambda _: site.post(path, flood), range(80)))
    limited = [response for response in responses if response.status == 429]
    print(f"{path}: {len(limited)} of {len(responses)} requests answered 429")
    assert limited and len(limited) < len(responses)
    assert {response.status for response in responses} == {flood_status, 429}
    assert "detail" in limited[0].json()
    assert limited[0].headers["Content-Type"] == "application/json"
    # ...while another client (the host itself, 127.0.0.1) is served.
    other = host.check_output(
        "curl --silent --output /dev/null --write-out '%{http_code}' "
        "--cacert /etc/nginx/tls/localhost.crt --header 'Content-Type: application/json' "
        f"--data {shlex.quote(json.dumps(probe))} https://localhost{path}"
    )
    assert other == str(probe_status)
    # The limit is a rate: this machine is served again a moment later.
    assert wait_until(lambda: site.post(path, probe).status == probe_status, timeout=10)
