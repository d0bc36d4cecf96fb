"""JWT signing keys rotated across both app hosts with
playbooks/rotate_jwt_keys.yml: graceful (nobody logged out, under load),
retire (the old key's tokens refused once it goes), emergency (everything
earlier refused), rotations stopped part-way and run again, and a host
without the keyring given its peers'.

The tests run in file order and build on each other's keyring.
"""
import json
import shlex

from conftest import APP_HOSTS, HOSTS
from testlib import (
    KEYRING, jwt_claims, jwt_header, keyring, keyring_secrets, recap_counts, run_playbook, start_playbook,
)

SOCKET_CURL = (
    "curl --silent --unix-socket /run/gunicorn/gunicorn.sock "
    "--header 'Host: localhost' --header 'X-Forwarded-Proto: https' "
)


def _kid(token):
    return jwt_header(token)["kid"]


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


def _key_fragments(hosts):
    return {fragment for part in APP_HOSTS for fragment in keyring_secrets(hosts[part]).values()}


def _assert_no_key_material(output, *fragment_sets):
    leaked = [fragment[:8] for fragment in set().union(*fragment_sets) if fragment in output]
    assert not leaked, f"key material in a playbook's output (starts: {leaked})"


def _rotate(hosts, *extra):
    """Run rotate_jwt_keys.yml; require success and no key material in its
    output, old keys or new."""
    secrets_before = _key_fragments(hosts)
    result = run_playbook("rotate_jwt_keys.yml", *extra)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    _assert_no_key_material(output, secrets_before, _key_fragments(hosts))
    return result


def _signed_with(host, kid, claims):
    """A token with `claims`, signed on `host` with its keyring's key `kid`
    (the key never leaves the host)."""
    script = (
        "import json, sys, jwt\n"
        "ring = json.load(open(sys.argv[1]))\n"
        "key = next(k for k in ring['keys'] if k['kid'] == sys.argv[2])\n"
        "print(jwt.encode(json.loads(sys.argv[3]), key['key'], algorithm=key['alg'], headers={'kid': key['kid']}))\n"
    )
    return host.check_output(
        "/srv/app/current/venv/bin/python -c " + " ".join(shlex.quote(arg) for arg in (script, KEYRING, kid, json.dumps(claims)))
    ).strip()


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


def _stop_a_rotation_at_its_pause(hosts):
    """Start a graceful rotation and stop it between its phases, while it
    waits to activate; return the staged kid and the keyring then."""
    signing_before = _signing_kid(_same_keyring_everywhere(hosts))
    secrets_before = _key_fragments(hosts)
    rotation = start_playbook("rotate_jwt_keys.yml", "-e", "jwt_keys_publish_wait=600")
    output = []
    pausing = False
    try:
        for line in rotation.stdout:
            output.append(line)
            pausing = pausing or "Give JWKS caches time to fetch the new key" in line
            # The pause's own line, from the worker process that runs it:
            # stopped at the task's banner instead, ansible-playbook may not
            # have recorded that worker yet, and leaves it running (and this
            # pipe open) for the whole pause.
            if pausing and line.startswith("Pausing for"):
                break
        else:
            raise AssertionError("the rotation ended before its pause")
    finally:
        rotation.terminate()
        output.append(rotation.communicate(timeout=60)[0])
    _assert_no_key_material("".join(output), secrets_before, _key_fragments(hosts))
    ring = _same_keyring_everywhere(hosts)
    assert _signing_kid(ring) == signing_before
    (staged,) = [key["kid"] for key in ring["keys"] if key["state"] == "verifying" and not key["retired"]]
    # Staged: every host verifies the new key (JWKS lists it) before any
    # signs with it.
    for part in APP_HOSTS:
        assert _jwks_kids(hosts[part]) == {key["kid"] for key in ring["keys"]}
    return staged, ring


def _access_on(host, user):
    """An access token from `host`'s own Gunicorn."""
    body = json.dumps({"username": user["username"], "password": user["password"]})
    return json.loads(host.check_output(
        SOCKET_CURL + "--fail --header 'Content-Type: application/json' "
        f"--data {shlex.quote(body)} http://localhost/api/token/"
    ))["access"]


# What activating does to one host's file, written the way the role writes
# it, without reloading the app: a run stopped between those two steps.
ACTIVATE_ON_THIS_HOST_ONLY = """
import json, sys, time
path, staged = sys.argv[1], sys.argv[2]
ring = json.load(open(path))
for key in ring["keys"]:
    if key["state"] == "signing":
        key.update(state="verifying", retired=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    elif key["kid"] == staged:
        key["state"] = "signing"
ring["version"] += 1
with open(path, "w") as out:
    out.write(json.dumps(ring, indent=2, sort_keys=True) + "\\n")
"""


def test_rotating_again_after_an_interruption_completes_it(hosts):
    staged, _ = _stop_a_rotation_at_its_pause(hosts)
    _rotate(hosts)
    ring = _same_keyring_everywhere(hosts)
    assert _signing_kid(ring) == staged
    assert not [key for key in ring["keys"] if key["state"] == "verifying" and not key["retired"]]


def test_a_rotation_stopped_while_activating_is_finished_not_repeated(hosts, api_user):
    staged, ring = _stop_a_rotation_at_its_pause(hosts)
    # app1's file says "sign with the staged key"; its app still runs the
    # keyring before; app2 has not been reached.
    hosts["app1"].run_expect([0], " ".join(
        shlex.quote(arg) for arg in ("python3", "-c", ACTIVATE_ON_THIS_HOST_ONLY, KEYRING, staged)))
    assert _kid(_access_on(hosts["app1"], api_user)) != staged

    _rotate(hosts)
    finished = _same_keyring_everywhere(hosts)
    # The same rotation, finished: no other key was made.
    assert _signing_kid(finished) == staged
    assert {key["kid"] for key in finished["keys"]} == {key["kid"] for key in ring["keys"]}
    # Both hosts sign with it, app1 too although its file had not changed.
    for part in APP_HOSTS:
        assert _kid(_access_on(hosts[part], api_user)) == staged


def test_retire_removes_only_keys_whose_tokens_have_expired(hosts, site, api_user):
    ring = _same_keyring_everywhere(hosts)
    current = _signing_kid(ring)
    retired = [key["kid"] for key in ring["keys"] if key["state"] == "verifying"]
    assert retired

    # With the real lifetimes (a day of refresh), nothing may go yet.
    _rotate(hosts, "-e", "jwt_keys_retire=true")
    assert _same_keyring_everywhere(hosts) == ring

    # A token signed with a key that stopped signing still verifies while the
    # key is in the keyring (here one that has not expired: made for the test).
    claims = jwt_claims(site.obtain_tokens(api_user["username"], api_user["password"])["access"])
    old_key_token = _signed_with(hosts["app1"], retired[0], claims)
    assert _kid(old_key_token) == retired[0]
    for part in APP_HOSTS:
        assert _status_on(hosts[part], "/api/me/", old_key_token) == 200

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
        assert _status_on(hosts[part], "/api/me/", old_key_token) == 401


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


def test_a_rotation_limited_to_some_app_hosts_is_refused(hosts):
    ring = _same_keyring_everywhere(hosts)
    result = run_playbook("rotate_jwt_keys.yml", "--limit", HOSTS["app1"])
    assert result.returncode != 0
    assert "must run on every app host" in result.stdout + result.stderr
    assert _same_keyring_everywhere(hosts) == ring


def test_a_host_without_the_keyring_gets_its_peers_on_its_first_site_run(hosts):
    # As a new app host is added: site.yml limited to it. Its keyring comes
    # from the hosts outside the run.
    expected = hosts["app1"].check_output(f"sha256sum {KEYRING}").split()[0]
    secrets = _key_fragments(hosts)
    hosts["app2"].run_expect([0], f"rm {KEYRING}")
    result = run_playbook("site.yml", "--limit", HOSTS["app2"])
    assert result.returncode == 0, result.stdout[-4000:]
    _assert_no_key_material(result.stdout + result.stderr, secrets)
    assert hosts["app2"].check_output(f"sha256sum {KEYRING}").split()[0] == expected
    # The site: both hosts serve tokens each other verifies.
    for part in APP_HOSTS:
        assert _jwks_kids(hosts[part]) == {key["kid"] for key in keyring(hosts["app1"])["keys"]}
    assert set(recap_counts(result.stdout)) == {HOSTS["app2"]}, result.stdout[-4000:]
