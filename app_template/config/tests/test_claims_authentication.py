"""ClaimsAuthentication: the caller's identity from a valid access token's
claims, without a database query; every check of JWTAuthentication kept."""
import jwt
import pytest
from django.conf import settings
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIRequestFactory
from rest_framework_simplejwt.exceptions import InvalidToken

from config.jwt_tokens import ClaimsAuthentication

pytestmark = pytest.mark.django_db


def _authenticate(token, scheme="Bearer"):
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"{scheme} {token}")
    return ClaimsAuthentication().authenticate(request)


def test_identity_comes_from_the_token_without_a_query(tokens, user, django_assert_num_queries):
    with django_assert_num_queries(0):
        identity, token = _authenticate(tokens["access"])
    assert identity.is_authenticated
    assert (identity.id, identity.username, identity.email) == (str(user.id), "alice", "alice@example.com")
    assert token["username"] == "alice"


def test_refresh_tokens_and_forgeries_are_refused(tokens):
    with pytest.raises(InvalidToken):
        _authenticate(tokens["refresh"])
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    forged = jwt.encode(claims, "another-key-" * 4, algorithm="HS256")
    with pytest.raises(AuthenticationFailed):
        _authenticate(forged)


def test_the_trade_off_a_deactivated_user_keeps_the_identity_until_expiry(tokens, user):
    user.is_active = False
    user.save()
    identity, _ = _authenticate(tokens["access"])
    assert identity.username == "alice"
    assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() <= 300


def test_a_refresh_brings_the_identity_up_to_date(client, tokens, user):
    user.username, user.email = "alice.b", "alice.b@example.com"
    user.save()
    assert _authenticate(tokens["access"])[0].username == "alice"
    refreshed = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]}).json()
    identity, _ = _authenticate(refreshed["access"])
    assert (identity.username, identity.email) == ("alice.b", "alice.b@example.com")
    # The replacing refresh token carries the new identity on.
    again = client.post("/api/token/refresh/", {"refresh": refreshed["refresh"]}).json()
    assert _authenticate(again["access"])[0].username == "alice.b"


def test_the_scheme_is_read_without_regard_to_case(tokens, user):
    identity, _ = _authenticate(tokens["access"], "bearer")
    assert identity.username == "alice"
