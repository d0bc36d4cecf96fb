"""The client address behind proxies: believed from trusted peers only;
request bodies are read to their end whatever the answer."""
import logging

import pytest
from django.test import RequestFactory, override_settings

from config.middleware import DrainRequestBodyMiddleware, TrustedProxyMiddleware


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
