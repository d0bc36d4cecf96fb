"""Liveness and readiness probes."""
import pytest
from django.db import OperationalError
from django.test import Client


def test_healthz_is_200(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_is_200_when_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["database"] == "ok"


@pytest.mark.django_db
def test_readyz_is_503_when_database_fails(client, monkeypatch):
    from django.db import connection

    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["database"] == "down"


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_answer_other_methods_with_json_405(path):
    # With the CSRF check on, as in production: it must not answer first.
    response = Client(enforce_csrf_checks=True).post(path)
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response.json() == {"detail": 'Method "POST" not allowed.'}


def test_responses_name_the_release_and_host(client, settings):
    response = client.get("/healthz")
    assert response["X-Release"] == settings.RELEASE_ID
    assert response["X-Served-By"]
