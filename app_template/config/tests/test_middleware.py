"""The client address behind proxies: believed from trusted peers only;
request bodies are read to their end whatever the answer; a database out
of reach is a 503."""
import logging
import socket

import pytest
from django.db import DatabaseError, connection, connections, transaction
from django.test import RequestFactory, override_settings

from config.jwt_tokens import UserLoader
from config.middleware import DatabaseUnavailableMiddleware, DrainRequestBodyMiddleware, TrustedProxyMiddleware


def _seen(peer, trusted=(), **headers):
    """REMOTE_ADDR and the forwarding headers the view sees."""
    seen = {}

    def view(request):
        seen.update(request.META)
        return None

    with override_settings(TRUSTED_PROXIES=list(trusted)):
        middleware = TrustedProxyMiddleware(view)
    request = RequestFactory().get("/", REMOTE_ADDR=peer, **headers)
    middleware(request)
    return seen


FORWARDED = {
    "HTTP_X_REAL_IP": "203.0.113.7",
    "HTTP_X_FORWARDED_FOR": "203.0.113.7",
    "HTTP_X_FORWARDED_PROTO": "https",
}


def test_local_nginx_on_the_unix_socket_is_believed():
    seen = _seen("", **FORWARDED)
    assert seen["REMOTE_ADDR"] == "203.0.113.7"
    assert seen["HTTP_X_FORWARDED_PROTO"] == "https"


@pytest.mark.parametrize("trusted", [["10.0.0.5"], ["10.0.0.0/24"]])
def test_a_trusted_load_balancer_is_believed(trusted):
    seen = _seen("10.0.0.5", trusted, **FORWARDED)
    assert seen["REMOTE_ADDR"] == "203.0.113.7"
    assert seen["HTTP_X_FORWARDED_PROTO"] == "https"


def test_any_other_peer_cannot_forge_address_or_scheme():
    seen = _seen("10.0.0.9", ["10.0.0.5"], **FORWARDED)
    assert seen["REMOTE_ADDR"] == "10.0.0.9"
    for name in FORWARDED:
        assert name not in seen


def test_a_malformed_real_ip_is_ignored():
    seen = _seen("10.0.0.5", ["10.0.0.5"], HTTP_X_REAL_IP="not-an-ip")
    assert seen["REMOTE_ADDR"] == "10.0.0.5"


def test_the_access_log_records_the_client_address(client, caplog):
    with caplog.at_level(logging.INFO, logger="api.access"):
        client.get("/healthz", REMOTE_ADDR="198.51.100.4")
    (record,) = [r for r in caplog.records if r.name == "api.access"]
    assert record.client_ip == "198.51.100.4"


@pytest.mark.parametrize("read_by_view", [0, 1000, 300_000])
def test_the_rest_of_a_request_body_is_read_whatever_the_view_read(read_by_view):
    # Unread bytes left in the socket when Gunicorn closes it reset the
    # connection, and nginx may answer 502 instead of the app's response.
    request = RequestFactory().post("/api/me/", data=b"x" * 300_000, content_type="application/json")
    unread = request.META["wsgi.input"]  # counts the bytes nobody has read

    def view(request):
        request.read(read_by_view)
        return "the view's answer"

    assert DrainRequestBodyMiddleware(view)(request) == "the view's answer"
    assert len(unread) == 0


def test_a_request_without_a_body_is_left_alone():
    request = RequestFactory().get("/api/me/")
    assert DrainRequestBodyMiddleware(lambda request: "answer")(request) == "answer"


def _closed_port():
    """A local TCP port nothing listens on: connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unreachable_database_error():
    """The error Django raises for a database it cannot connect to."""
    default = connections["default"]
    settings_dict = {**default.settings_dict, "HOST": "127.0.0.1", "PORT": str(_closed_port())}
    unreachable = type(default)(settings_dict, alias="unreachable")
    with pytest.raises(DatabaseError) as raised:
        unreachable.ensure_connection()
    return raised.value


def test_an_api_request_without_its_database_is_a_503_with_retry_after(client, tokens, monkeypatch, caplog):
    error = _unreachable_database_error()

    def lost_database(self, user_id):
        raise error

    monkeypatch.setattr(UserLoader, "load", lost_database)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Service temporarily unavailable: the database cannot be reached."}
    assert response["Retry-After"] == "5"
    # Logged once, as Django logs a 500, with the cause for the operator.
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.getMessage() == "Service Unavailable: /api/me/"
    assert record.exc_info[1] is error


@pytest.mark.django_db
def test_a_cancelled_query_is_still_the_apps_error():
    # statement_timeout: sending the request to the next app host would run
    # the same slow query there.
    with pytest.raises(DatabaseError) as raised, transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL statement_timeout = '1ms'")
            cursor.execute("SELECT pg_sleep(1)")
    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    assert middleware.process_exception(RequestFactory().get("/api/me/"), raised.value) is None


def test_other_errors_are_left_to_django():
    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    assert middleware.process_exception(RequestFactory().get("/api/me/"), ValueError("a bug")) is None
