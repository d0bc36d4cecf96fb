"""Fixtures shared by every app's tests: an API client, a user, tokens."""
import pytest
from rest_framework.test import APIClient

PASSWORD = "correct horse battery staple"


@pytest.fixture
def client():
    """A DRF client that sends JSON unless told otherwise."""
    api = APIClient()
    api.default_format = "json"
    return api


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(
        username="alice", email="alice@example.com", password=PASSWORD
    )


@pytest.fixture
def tokens(client, user):
    """A fresh access/refresh pair for `user`, obtained through the API."""
    response = client.post(
        "/api/token/", {"username": user.username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.content
    return response.json()
