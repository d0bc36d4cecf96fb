#!/usr/bin/python
"""Compute the next JWT keyring of a fleet of app hosts (runs on the controller)."""

DOCUMENTATION = r"""
module: jwt_keyring
short_description: Compute the next JWT keyring from the app hosts' current ones
description:
  - Takes the keyring files read from every app host, picks the newest
    (highest C(version)), and applies one rotation step to it. The result is
    what every host must hold next; the role writes it.
  - Runs on the controller. The keyring holds private keys: call it with
    C(no_log), and print only the returned kids.
  - Keyring format (read by the app's config/jwt_keys.py) -
    C({"version": N, "keys": [{"kid", "alg", "state", "key", "created", "retired"}]}).
    A verifying key whose C(retired) is null has never signed (it is staged).
options:
  keyrings:
    description: The keyring files' contents, one per host; an empty string for a host without one.
    type: list
    elements: str
    required: true
  action:
    description:
      - C(ensure) makes a first keyring if no host has one, else keeps the newest.
      - C(stage) adds a new verify-only key, unless one is staged already or
        an activation stopped half-way (some host signs with a key another
        still holds as staged); then it only brings every host to the newest
        keyring, which finishes that rotation.
      - C(activate) makes the staged key the signing key; the old one keeps verifying.
      - C(retire) removes keys that stopped signing more than I(retire_after) seconds ago.
      - C(emergency) replaces every key with one new signing key.
    type: str
    required: true
    choices: [ensure, stage, activate, retire, emergency]
  algorithm:
    description: Algorithm of keys made now.
    type: str
    default: ES256
    choices: [HS256, RS256, ES256, EdDSA]
  retire_after:
    description: Seconds after it stopped signing that a key is no longer needed.
    type: int
    default: 0
"""

RETURN = r"""
keyring:
  description: The keyring every host must hold, as JSON text (secret).
  type: str
  returned: always
version:
  description: Its version.
  type: int
  returned: always
signing_kid:
  description: Kid of its signing key.
  type: str
  returned: always
verifying_kids:
  description: Kids of its other keys.
  type: list
  returned: always
staged_kid:
  description: Kid of the staged (verify-only, never signed) key, or empty.
  type: str
  returned: always
removed_kids:
  description: Kids this step removed.
  type: list
  returned: always
public_kids:
  description: Kids of its keys that /.well-known/jwks.json publishes (the asymmetric ones).
  type: list
  returned: always
probe_token:
  description: >-
    A short-lived token (no user, 5 minutes) signed with the staged key if
    there is one, else the signing key, to check that a host verifies it.
  type: str
  returned: always
"""

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime, timedelta, timezone

from ansible.module_utils.basic import AnsibleModule

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    HAS_CRYPTOGRAPHY = True
except ImportError:
    HAS_CRYPTOGRAPHY = False

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def _now():
    return datetime.now(timezone.utc)


def _new_key(algorithm):
    now = _now()
    if algorithm == "HS256":
        material = secrets.token_urlsafe(48)
    else:
        private_key = {
            "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
            "EdDSA": ed25519.Ed25519PrivateKey.generate,
        }[algorithm]()
        material = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    return {
        "kid": f"{now:%Y%m%d}-{secrets.token_hex(4)}",
        "alg": algorithm,
        "state": "verifying",
        "key": material,
        "created": now.strftime(TIME_FORMAT),
        "retired": None,
    }


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(key, signing_input):
    """A JWS signature of `signing_input` (bytes) with a keyring entry."""
    if key["alg"] == "HS256":
        return hmac.new(key["key"].encode(), signing_input, hashlib.sha256).digest()
    private_key = serialization.load_pem_private_key(key["key"].encode(), password=None)
    if key["alg"] == "RS256":
        return private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    if key["alg"] == "ES256":
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return private_key.sign(signing_input)


def _probe_token(key):
    now = int(time.time())
    header = {"alg": key["alg"], "kid": key["kid"], "typ": "JWT"}
    claims = {"token_type": "probe", "jti": secrets.token_hex(16), "iat": now, "exp": now + 300}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(_sign(key, signing_input.encode()))}"


def _parse(module, texts):
    """The keyrings of the hosts that have one, checked."""
    keyrings = []
    for text in texts:
        if not text.strip():
            continue
        try:
            keyring = json.loads(text)
            version = int(keyring["version"])
            keys = keyring["keys"]
        except (ValueError, KeyError, TypeError):
            module.fail_json(msg="An app host holds a keyring that is not valid JSON with a version and keys.")
        if len([key for key in keys if key.get("state") == "signing"]) != 1:
            module.fail_json(msg=f"The keyring of version {version} does not have exactly one signing key.")
        keyrings.append({"version": version, "keys": keys})
    return keyrings


def _newest(keyrings):
    return max(keyrings, key=lambda keyring: keyring["version"], default=None)


def _activation_unfinished(newest, keyrings):
    """Whether a rotation stopped while activating: the newest keyring signs
    with a key that another host still holds as staged. Staging again would
    start a second rotation; bringing the other hosts to the newest one
    finishes the first."""
    signing = next(key["kid"] for key in newest["keys"] if key["state"] == "signing")
    return any((_staged(keyring) or {}).get("kid") == signing for keyring in keyrings)


def _staged(keyring):
    return next((k for k in keyring["keys"] if k["state"] == "verifying" and not k.get("retired")), None)


def _step(module, keyrings, action, algorithm, retire_after):
    """The keyring after `action` on the newest of the hosts' `keyrings`, and
    the kids it removed."""
    keyring = _newest(keyrings)
    keys = [dict(key) for key in keyring["keys"]] if keyring else []
    removed = []
    if action == "emergency":
        removed = [key["kid"] for key in keys]
        keys = [_new_key(algorithm) | {"state": "signing"}]
    elif keyring is None:
        if action != "ensure":
            module.fail_json(msg="No app host has a JWT keyring yet: run site.yml first.")
        keys = [_new_key(algorithm) | {"state": "signing"}]
    elif action == "stage":
        if _staged(keyring) is None and not _activation_unfinished(keyring, keyrings):
            keys.append(_new_key(algorithm))
    elif action == "activate":
        staged = _staged(keyring)
        if staged is not None:
            stamp = _now().strftime(TIME_FORMAT)
            for key in keys:
                if key["state"] == "signing":
                    key.update(state="verifying", retired=stamp)
                elif key["kid"] == staged["kid"]:
                    key.update(state="signing")
    elif action == "retire":
        cutoff = _now() - timedelta(seconds=retire_after)
        kept = []
        for key in keys:
            retired = key.get("retired")
            if key["state"] == "verifying" and retired and \
                    datetime.strptime(retired, TIME_FORMAT).replace(tzinfo=timezone.utc) <= cutoff:
                removed.append(key["kid"])
            else:
                kept.append(key)
        keys = kept
    changed = keyring is None or keys != keyring["keys"]
    version = (keyring["version"] if keyring else 0) + (1 if changed else 0)
    return {"version": version, "keys": keys}, removed, changed


def main():
    module = AnsibleModule(
        argument_spec={
            # Not no_log here: Ansible would then mask every returned value
            # that contains one of these texts, the next keyring included.
            # Callers set no_log on the task instead.
            "keyrings": {"type": "list", "elements": "str", "required": True, "no_log": False},
            "action": {"type": "str", "required": True,
                       "choices": ["ensure", "stage", "activate", "retire", "emergency"]},
            "algorithm": {"type": "str", "default": "ES256", "choices": ["HS256", "RS256", "ES256", "EdDSA"]},
            "retire_after": {"type": "int", "default": 0},
        },
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg="The Python package cryptography is needed on the controller.")
    keyrings = _parse(module, module.params["keyrings"])
    keyring, removed, changed = _step(
        module, keyrings, module.params["action"], module.params["algorithm"], module.params["retire_after"]
    )
    signing = next(key for key in keyring["keys"] if key["state"] == "signing")
    staged = _staged(keyring)
    module.exit_json(
        changed=changed,
        keyring=json.dumps(keyring, indent=2, sort_keys=True) + "\n",
        version=keyring["version"],
        signing_kid=signing["kid"],
        verifying_kids=[key["kid"] for key in keyring["keys"] if key is not signing],
        staged_kid=staged["kid"] if staged else "",
        removed_kids=removed,
        public_kids=[key["kid"] for key in keyring["keys"] if key["alg"] != "HS256"],
        probe_token=_probe_token(staged or signing),
    )


if __name__ == "__main__":
    main()
