"""The JWT keyring: kid in every token, verification by kid, and the
rotation phases the deploy goes through, for every supported algorithm."""
import base64
import hashlib
import hmac
import json
from datetime import datetime, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from conftest import PASSWORD
from config.jwt_keys import ALGORITHMS, Keyring, new_key_entry

pytestmark = pytest.mark.django_db


def _ring(*entries):
    return Keyring.from_dict({"version": 1, "keys": list(entries)})


def _as(entry, state, retired=None):
    return entry | {"state": state, "retired": retired}


def _kid(token):
    return jwt.get_unverified_header(token)["kid"]


def _login(client):
    response = client.post("/api/token/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()


def _me(client, access):
    return client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {access}").status_code


def _jwks_kids(client):
    response = client.get("/.well-known/jwks.json")
    if response.status_code == 404:
        return None
    assert response.status_code == 200
    assert "max-age=" in response["Cache-Control"]
    keys = response.json()["keys"]
    assert all(key["use"] == "sig" and key["alg"] for key in keys)
    assert all("d" not in key for key in keys), "a private key part was published"
    return {key["kid"] for key in keys}


@pytest.mark.parametrize("alg", sorted(ALGORITHMS))
def test_graceful_rotation_keeps_every_token_working(client, user, alg):
    old, new = new_key_entry(alg, kid="old"), new_key_entry(alg, kid="new")
    published = (lambda kids: None) if alg == "HS256" else (lambda kids: kids)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    with override_settings(JWT_KEYRING=_ring(old)):
        before = _login(client)
        assert _kid(before["access"]) == "old"
        assert _jwks_kids(client) == published({"old"})

    # Stage: the new key verifies on every host before any host signs with it.
    with override_settings(JWT_KEYRING=_ring(old, _as(new, "verifying"))):
        assert _me(client, before["access"]) == 200
        assert _kid(_login(client)["access"]) == "old"
        assert _jwks_kids(client) == published({"old", "new"})

    # Activate: the new key signs; the old one still verifies.
    with override_settings(JWT_KEYRING=_ring(_as(old, "verifying", now), _as(new, "signing"))):
        assert _me(client, before["access"]) == 200
        after = _login(client)
        assert _kid(after["access"]) == "new"
        assert _me(client, after["access"]) == 200
        refreshed = client.post("/api/token/refresh/", {"refresh": before["refresh"]})
        assert refreshed.status_code == 200
        assert _kid(refreshed.json()["access"]) == "new"
        assert client.post("/api/token/verify/", {"token": before["access"]}).status_code == 200
        assert _jwks_kids(client) == published({"old", "new"})

    # Retire: tokens of the old key are refused, the new key's still work.
    with override_settings(JWT_KEYRING=_ring(_as(new, "signing"))):
        assert _me(client, before["access"]) == 401
        assert client.post("/api/token/verify/", {"token": before["access"]}).status_code == 401
        assert _me(client, after["access"]) == 200
        assert _jwks_kids(client) == published({"new"})


@pytest.mark.parametrize("alg", ["ES256", "HS256"])
def test_emergency_rotation_refuses_every_earlier_token(client, user, alg):
    with override_settings(JWT_KEYRING=_ring(new_key_entry(alg, kid="leaked"))):
        before = _login(client)
    with override_settings(JWT_KEYRING=_ring(new_key_entry(alg, kid="fresh"))):
        assert _me(client, before["access"]) == 401
        assert client.post("/api/token/refresh/", {"refresh": before["refresh"]}).status_code == 401
        assert _kid(_login(client)["access"]) == "fresh"


def test_token_with_unknown_or_missing_kid_is_refused(client, tokens, settings):
    key = settings.JWT_KEYRING.signing
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    unknown = jwt.encode(claims, key.signing_key, algorithm=key.alg, headers={"kid": "nope"})
    missing = jwt.encode(claims, key.signing_key, algorithm=key.alg)
    for token in (unknown, missing):
        assert _me(client, token) == 401


def test_a_key_verifies_with_its_own_algorithm_only(client, tokens, settings):
    # The classic confusion: HS256 "signed" with the public key as secret.
    key = settings.JWT_KEYRING.signing
    claims = jwt.decode(tokens["access"], options={"verify_signature": False})
    header = {"kid": key.kid, "alg": "HS256", "typ": "JWT"}

    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    public_pem = key.verifying_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert _me(client, f"{signing_input}.{b64(signature)}") == 401


def test_jwks_is_404_for_a_shared_secret(client):
    with override_settings(JWT_KEYRING=_ring(new_key_entry("HS256"))):
        response = client.get("/.well-known/jwks.json")
    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda keys: keys + [new_key_entry("ES256")], "exactly one signing key"),
        (lambda keys: [keys[0] | {"alg": "PS512"}], "alg must be one of"),
        (lambda keys: [keys[0] | {"alg": "HS256", "key": "short"}], "32 characters or more"),
        (lambda keys: [keys[0] | {"alg": "RS256"}], "does not suit RS256"),
        (lambda keys: [keys[0] | {"key": "not a pem"}], "not a PEM private key"),
    ],
)
def test_a_bad_keyring_stops_startup_without_showing_keys(tmp_path, change, message):
    entry = new_key_entry("ES256", kid="k1")
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps({"version": 1, "keys": change([entry])}))
    with pytest.raises(ImproperlyConfigured) as error:
        Keyring.from_file(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "PRIVATE KEY" not in str(error.value)


def test_a_missing_keyring_file_is_named(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        Keyring.from_file(tmp_path / "absent.json")
