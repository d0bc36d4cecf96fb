"""The verified-token cache of KeyringTokenBackend: each token's signature is
checked once per process, and a recalled token is still refused once it
expires or once its key is no longer the keyring's."""
from datetime import datetime
from types import SimpleNamespace

import jwt
import pytest
from django.test import override_settings
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken

from config import jwt_tokens
from config.jwt_keys import Keyring, new_key_entry

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend():
    """A backend of its own, so that the cache starts empty."""
    return jwt_tokens.KeyringTokenBackend()


@pytest.fixture
def verifications(monkeypatch):
    """Counts PyJWT's decodes, each of which checks a signature."""
    calls = []
    decode = jwt.decode

    def counting(*args, **kwargs):
        calls.append(args[0])
        return decode(*args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_token_is_verified_once_and_then_recalled(backend, tokens, verifications):
    first = backend.decode(tokens["access"])
    second = backend.decode(tokens["access"])
    assert first == second and first["username"] == "alice"
    assert len(verifications) == 1
    # Callers get copies: changing one cannot change what is recalled.
    second["username"] = "mallory"
    assert backend.decode(tokens["access"])["username"] == "alice"


def test_a_token_is_refused_once_it_expires_though_it_was_verified(backend, tokens, monkeypatch):
    expiry = backend.decode(tokens["access"])["exp"]

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(expiry + 1, tz)

    monkeypatch.setattr(jwt_tokens, "time", SimpleNamespace(time=lambda: expiry + 1))
    monkeypatch.setattr(jwt.api_jwt, "datetime", Later)
    with pytest.raises(TokenBackendExpiredToken):
        backend.decode(tokens["access"])


def test_a_new_keyring_verifies_again(backend, tokens, verifications):
    backend.decode(tokens["access"])
    # The same kid with another key: a recalled payload would let it through.
    other = Keyring.from_dict({"keys": [new_key_entry("ES256", kid="test-signing")]})
    with override_settings(JWT_KEYRING=other), pytest.raises(TokenBackendError):
        backend.decode(tokens["access"])
    assert len(verifications) == 2


def test_unverified_decodes_are_neither_recalled_nor_remembered(backend, tokens, verifications):
    backend.decode(tokens["access"], verify=False)
    backend.decode(tokens["access"])
    backend.decode(tokens["access"], verify=False)
    assert len(verifications) == 3


def test_the_cache_is_bounded_and_forgets_the_oldest_first(backend, user, monkeypatch, verifications):
    monkeypatch.setattr(backend, "VERIFIED_CACHE_SIZE", 3)
    issued = [str(jwt_tokens.AccessToken.for_user(user)) for _ in range(5)]
    for token in issued:
        backend.decode(token)
    assert list(backend._verified) == issued[2:]
    backend.decode(issued[0])
    assert len(verifications) == 6
