"""The JWT keyring: several signing keys, each named by a `kid`.

simplejwt signs and verifies with exactly one key and writes no key id, so
keys could never be rotated without logging everybody out. The keyring holds
one *signing* key and any number of *verifying* ones: tokens are signed with
the signing key and carry its `kid` in their header; a token is verified with
the key its `kid` names, and refused when that key is not in the keyring.

The keyring is a JSON file the deploy writes (roles/jwt_keys), read once per
process (Gunicorn re-reads it on a graceful reload):

    {"version": 3,
     "keys": [{"kid": "...", "alg": "ES256", "state": "signing",
               "key": "<PEM private key, or the HS256 secret>",
               "created": "2026-11-23T12:00:00Z", "retired": null}, ...]}

A verifying key whose "retired" is null has never signed (it is staged for
the next rotation); "retired" is when a key stopped signing. Error messages
name the file and the key's kid, never key material.
"""
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.core.exceptions import ImproperlyConfigured
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

# The algorithms a keyring may use, and what turns their public key into a JWK.
ASYMMETRIC = {"RS256": RSAAlgorithm, "ES256": ECAlgorithm, "EdDSA": OKPAlgorithm}
ALGORITHMS = {"HS256", *ASYMMETRIC}
# HS256 secrets shorter than this are refused (RFC 7518 asks for 256 bits).
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Key:
    kid: str
    alg: str
    state: str
    retired: str | None
    # What PyJWT signs and verifies with: the secret, or key objects.
    signing_key: Any = field(repr=False)
    verifying_key: Any = field(repr=False)

    @property
    def is_asymmetric(self):
        return self.alg in ASYMMETRIC

    def public_jwk(self):
        jwk = ASYMMETRIC[self.alg].to_jwk(self.verifying_key, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


class Keyring:
    def __init__(self, keys, version=0, source="the keyring"):
        self.version = version
        self.keys = {key.kid: key for key in keys}
        signing = [key for key in keys if key.state == "signing"]
        if len(signing) != 1:
            raise ImproperlyConfigured(
                f"{source} must have exactly one signing key, it has {len(signing)}."
            )
        if len(self.keys) != len(keys):
            raise ImproperlyConfigured(f"{source} has two keys with the same kid.")
        self.signing = signing[0]

    def get(self, kid):
        return self.keys.get(kid) if isinstance(kid, str) else None

    def jwks(self):
        """The public keys, for /.well-known/jwks.json."""
        return {"keys": [key.public_jwk() for key in self.keys.values() if key.is_asymmetric]}

    @property
    def is_symmetric(self):
        return not self.signing.is_asymmetric

    @classmethod
    def from_dict(cls, data, source="the keyring"):
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ImproperlyConfigured(f"{source} must be a JSON object with a list of keys.")
        keys = [_load_key(entry, source) for entry in data["keys"]]
        return cls(keys, version=data.get("version", 0), source=source)

    @classmethod
    def from_file(cls, path):
        source = f"The JWT keyring {path}"
        try:
            with open(path, encoding="utf-8") as keyring_file:
                data = json.load(keyring_file)
        except OSError as error:
            raise ImproperlyConfigured(f"{source} cannot be read: {error.strerror}.") from None
        except ValueError:
            raise ImproperlyConfigured(f"{source} is not valid JSON.") from None
        return cls.from_dict(data, source)


def _load_key(entry, source):
    if not isinstance(entry, dict):
        raise ImproperlyConfigured(f"{source}: every key must be a JSON object.")
    kid, alg, state = entry.get("kid"), entry.get("alg"), entry.get("state")
    if not isinstance(kid, str) or not kid:
        raise ImproperlyConfigured(f"{source}: a key has no kid.")
    where = f"{source}, key {kid}"
    if alg not in ALGORITHMS:
        raise ImproperlyConfigured(f"{where}: alg must be one of {sorted(ALGORITHMS)}, got {alg!r}.")
    if state not in {"signing", "verifying"}:
        raise ImproperlyConfigured(f"{where}: state must be signing or verifying, got {state!r}.")
    material = entry.get("key")
    if not isinstance(material, str):
        raise ImproperlyConfigured(f"{where}: the key is missing.")
    if alg == "HS256":
        if len(material) < MIN_SECRET_LENGTH:
            raise ImproperlyConfigured(f"{where}: an HS256 secret needs {MIN_SECRET_LENGTH} characters or more.")
        signing_key = verifying_key = material.encode()
    else:
        try:
            signing_key = load_pem_private_key(material.encode(), password=None)
        except ValueError:
            raise ImproperlyConfigured(f"{where}: the key is not a PEM private key.") from None
        if ASYMMETRIC[alg].__name__ != _algorithm_for(signing_key):
            raise ImproperlyConfigured(f"{where}: the private key does not suit {alg}.")
        verifying_key = signing_key.public_key()
    return Key(kid=kid, alg=alg, state=state, retired=entry.get("retired"),
               signing_key=signing_key, verifying_key=verifying_key)


def _algorithm_for(private_key):
    """The PyJWT algorithm class a private key belongs to."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return RSAAlgorithm.__name__
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.name == "secp256r1":
        return ECAlgorithm.__name__
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return OKPAlgorithm.__name__
    return None


def new_key_entry(alg, kid=None, state="signing"):
    """A keyring entry with fresh key material, for tests and a developer's
    machine. Servers get theirs from roles/jwt_keys/library/jwt_keyring.py,
    which makes keys the same way on the controller (it cannot import the
    app, so the few lines are repeated there)."""
    if alg == "HS256":
        material = secrets.token_urlsafe(48)
    else:
        private_key = {
            "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate,
        }[alg]()
        material = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    return {
        "kid": kid or secrets.token_hex(8),
        "alg": alg,
        "state": state,
        "key": material,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "retired": None,
    }
