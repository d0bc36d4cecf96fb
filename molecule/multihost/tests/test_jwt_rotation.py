"""JWT signing keys rotated across both app hosts with
playbooks/rotate_jwt_keys.yml: graceful (nobody logged out, under load),
retire (the old key's tokens refused once it goes), emergency (everything
earlier refused), and a host without the keyring given its peers'.

The tests run in file order and build on each other's keyring.
"""
import base64
import json

from conftest import APP_HOSTS
from testlib import (
    KEYRING, jwt_claims, keyring, keyring_secrets, recap_counts, run_playbook, start_playbook,
)

SOCKET_CURL = (
    "curl --silent --unix-socket /run/gunicorn/gunicorn.sock "
    "--header 'Host: localhost' --header 'X-Forwarded-Proto: https' "
)


def _kid(token):
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def _status_on(host, path, token):
    """The status `host`'s own Gunicorn answers for GET `path` with `token`."""
    return int(host.check_output(
        SOCKET_CURL + f"--output /dev/null --write-out '%{{http_code}}' "
        f"--header 'Authorization: Bearer {token}' http://localhost{path}"
    ))


def _refresh_on(host, refresh):
    body = json.dumps({"refresh": refresh})
    return int(host.check_output(
        SOCKET_CURL + "--output /dev/null --write-out '%{http_code}' "
        f"--header 'Content-Type: application/json' --data '{body}' http://localhost/api/token/refresh/"
    ))


def _jwks_kids(host):
    return {key["kid"] for key in json.loads(host.check_output(SOCKET_CURL + "http://localhost/.well-known/jwks.json"))["keys"]}


def _rotate(hosts, *extra):
    """Run rotate_jwt_keys.yml; require success and no key material in its
    output, old keys or new."""
    secrets_before = {fragment for part in APP_HOSTS for fragment in keyring_secrets(hosts[part]).values()}
    result = run_playbook("rotate_jwt_keys.yml", *extra)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    secrets_after = {fragment for part in APP_HOSTS for fragment in keyring_secrets(hosts[part]).values()}
    leaked = [fragment[:8] for fragment in secrets_before | secrets_after if fragment in output]
    assert not leaked, f"key material in the rotation output (starts: {leaked})"
    return result


def _same_keyring_everywhere(hosts):
    rings = [keyring(hosts[part]) for part in APP_HOSTS]
    assert rings[0] == rings[1]
    return rings[0]


def _signing_kid(ring):
    (kid,) = [key["kid"] for key in ring["keys"] if key["state"] == "signing"]
    return kid


def test_keyring_is_private_to_root_and_the_app(hosts):
    for part in APP_HOSTS:
        keyring_file = hosts[part].file(KEYRING)
        assert (keyring_file.user, keyring_file.group, keyring_file.mode) == ("root", "django", 0o640)
        assert hosts[part].file(KEYRING.rsplit("/", 1)[0]).mode == 0o750


def test_graceful_rotation_logs_nobody_out(hosts, site, api_user, load):
    ring = _same_keyring_everywhere(hosts)
    old_kid = _signing_kid(ring)
    before = site.obtain_tokens(api_user["username"], api_user["password"])
    assert _kid(before["access"]) == old_kid
    for part in APP_HOSTS:
        assert _jwks_kids(hosts[part]) == {old_kid}

    started = {part: hosts[part].check_output("date '+%Y-%m-%d %H:%M:%S'") for part in APP_HOSTS}
    # A token every 10 calls: new tokens are signed during the rotation, and
    # the load stays under the rate limit on /api/token/.
    with load(threads=4, token_every=10) as running:
        _rotate(hosts)
        running.hold(3)
    failures = running.failures()
    print(f"graceful rotation under load: {running.summary()}; failed: {len(failures)}")
    assert len(failures) == 0, running.summary()
    # Workers were replaced one by one (gunicorn-rolling-reload), never all
    # at once by a HUP.
    for part in APP_HOSTS:
        signals = hosts[part].check_output(
            f"journalctl --quiet --output=cat --unit=gunicorn.service --since='{started[part]}' "
            "| grep -o 'Handling signal: [a-z]*' | sort | uniq -c"
        )
        assert "Handling signal: ttou" in signals and "hup" not in signals, signals

    ring = _same_keyring_everywhere(hosts)
    new_kid = _signing_kid(ring)
    assert new_kid != old_kid
    after = site.obtain_tokens(api_user["username"], api_user["password"])
    assert _kid(after["access"]) == new_kid
    for part in APP_HOSTS:
        assert _jwks_kids(hosts[part]) == {old_kid, new_kid}
        assert _status_on(hosts[part], "/api/me/", before["access"]) == 200
        assert _status_on(hosts[part], "/api/me/", after["access"]) == 200


def test_rotating_again_after_an_interruption_completes_it(hosts):
    signing_before = _signing_kid(_same_keyring_everywhere(hosts))
    # Interrupt a rotation between its phases: while it waits to activate.
    rotation = start_playbook("rotate_jwt_keys.yml", "-e", "jwt_keys_publish_wait=600")
    try:
        for line in rotation.stdout:
            if "Give JWKS caches time to fetch the new key" in line:
                break
        else:
            raise AssertionError("the rotation ended before its pause")
    finally:
        rotation.terminate()
        rotation.wait(timeout=60)
    ring = _same_keyring_everywhere(hosts)
    assert _signing_kid(ring) == signing_before
    (staged,) = [key["kid"] for key in ring["keys"] if key["state"] == "verifying" and not key["retired"]]

    _rotate(hosts)
    ring = _same_keyring_everywhere(hosts)
    assert _signing_kid(ring) == staged
    assert not [key for key in ring["keys"] if key["state"] == "verifying" and not key["retired"]]


def test_retire_removes_only_keys_whose_tokens_have_expired(hosts, site, api_user):
    ring = _same_keyring_everywhere(hosts)
    current = _signing_kid(ring)
    retired = [key["kid"] for key in ring["keys"] if key["state"] == "verifying"]
    assert retired

    # With the real lifetimes (a day of refresh), nothing may go yet.
    _rotate(hosts, "-e", "jwt_keys_retire=true")
    assert _same_keyring_everywhere(hosts) == ring

    # With lifetimes of a second, every key that stopped signing goes.
    result = _rotate(hosts, "-e", "jwt_keys_retire=true", "-e", "jwt_keys_access_lifetime=1",
                     "-e", "jwt_keys_refresh_lifetime=1")
    ring = _same_keyring_everywhere(hosts)
    assert [key["kid"] for key in ring["keys"]] == [current]
    assert all(kid in result.stdout for kid in retired)
    fresh = site.obtain_tokens(api_user["username"], api_user["password"])
    for part in APP_HOSTS:
        assert _jwks_kids(hosts[part]) == {current}
        assert _status_on(hosts[part], "/api/me/", fresh["access"]) == 200


def test_emergency_rotation_refuses_every_earlier_token(hosts, site, api_user):
    before = site.obtain_tokens(api_user["username"], api_user["password"])
    leaked_kid = _kid(before["access"])
    _rotate(hosts, "-e", "jwt_keys_emergency=true")
    ring = _same_keyring_everywhere(hosts)
    fresh_kid = _signing_kid(ring)
    assert [key["kid"] for key in ring["keys"]] == [fresh_kid] and fresh_kid != leaked_kid
    for part in APP_HOSTS:
        assert _jwks_kids(hosts[part]) == {fresh_kid}
        assert _status_on(hosts[part], "/api/me/", before["access"]) == 401
        assert _refresh_on(hosts[part], before["refresh"]) == 401
    after = site.obtain_tokens(api_user["username"], api_user["password"])
    assert _kid(after["access"]) == fresh_kid
    assert jwt_claims(after["access"])["token_type"] == "access"


def test_a_host_without_the_keyring_gets_its_peers_on_the_next_site_run(hosts):
    expected = hosts["app1"].check_output(f"sha256sum {KEYRING}").split()[0]
    hosts["app2"].run_expect([0], f"rm {KEYRING}")
    result = run_playbook("site.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert hosts["app2"].check_output(f"sha256sum {KEYRING}").split()[0] == expected
    counts = recap_counts(result.stdout)
    assert counts["drf-mh-app1"]["changed"] == 0, result.stdout[-4000:]
