"""GET /api/me/: who the Bearer token belongs to, and nothing for anyone else."""
import base64
import json

import jwt
import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def _bearer(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def test_me_returns_the_caller_with_one_query(client, tokens, user, django_assert_num_queries):
    # The one query loads the user, so that a deactivated user is refused.
    with django_assert_num_queries(1):
        response = client.get("/api/me/", **_bearer(tokens["access"]))
    assert response.status_code == 200
    assert response.json() == {"id": user.id, "username": "alice", "email": "alice@example.com"}


def test_me_without_token_is_401(client):
    response = client.get("/api/me/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_me_with_token_signed_by_another_key_is_401(client, tokens):
    forged = jwt.encode(_claims(tokens["access"]), "another-key-" * 4, algorithm="HS256")
    response = client.get("/api/me/", **_bearer(forged))
    assert response.status_code == 401


def test_me_with_alg_none_token_is_401(client, tokens):
    def b64(part):
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    unsigned = f'{b64({"alg": "none", "typ": "JWT"})}.{b64(_claims(tokens["access"]))}.'
    response = client.get("/api/me/", **_bearer(unsigned))
    assert response.status_code == 401


def test_me_with_refresh_token_is_401(client, tokens):
    response = client.get("/api/me/", **_bearer(tokens["refresh"]))
    assert response.status_code == 401


def test_me_with_valid_signature_but_expired_token_is_401(client, tokens):
    claims = _claims(tokens["access"]) | {"exp": 1}
    key = settings.JWT_KEYRING.signing
    expired = jwt.encode(claims, key.signing_key, algorithm=key.alg, headers={"kid": key.kid})
    response = client.get("/api/me/", **_bearer(expired))
    assert response.status_code == 401


def test_tokens_name_their_user(tokens, user):
    for kind in ("access", "refresh"):
        claims = _claims(tokens[kind])
        assert (claims["username"], claims["email"]) == (user.username, user.email)


def test_refresh_keeps_the_identity_and_is_refused_to_an_inactive_user(client, tokens, user):
    response = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    assert _claims(response.json()["access"])["username"] == "alice"
    user.is_active = False
    user.save()
    response = client.post("/api/token/refresh/", {"refresh": response.json()["refresh"]})
    assert response.status_code == 401


def test_me_reads_the_user_from_the_database_so_a_deleted_user_is_refused(client, tokens, user):
    assert client.get("/api/me/", **_bearer(tokens["access"])).json()["email"] == "alice@example.com"
    user.delete()
    assert client.get("/api/me/", **_bearer(tokens["access"])).status_code == 401


def test_refresh_for_a_deleted_user_is_401_not_an_error(client, tokens, user):
    user.delete()
    response = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    assert response.status_code == 401
