"""Helpers shared by every scenario's testinfra suite.

Requests go from the test machine to the ports the containers publish on
127.0.0.1, over real TLS: the client checks the site's certificate against
the one read from the host, and sends the site's name in SNI and Host.
"""
import base64
import functools
import glob
import hashlib
import hmac
import http.client
import json
import os
import re
import shlex
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import yaml

PROJECT_DIR = os.environ.get(
    "MOLECULE_PROJECT_DIRECTORY",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")),
)


def published_port(container, port):
    """The 127.0.0.1 port podman publishes `port` of `container` on."""
    out = subprocess.run(
        ["podman", "port", container, f"{port}/tcp"],
        check=True, capture_output=True, text=True,
    ).stdout
    return int(out.strip().splitlines()[0].rsplit(":", 1)[1])


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    def header_values(self, name):
        return self.headers.get_all(name) or []


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to `address` but speaks TLS and HTTP as `host`."""

    def __init__(self, host, port, address, context, timeout):
        super().__init__(host, port, context=context, timeout=timeout)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Site:
    """The deployed site as a client on the test machine reaches it."""

    domain: str
    https_port: int
    http_port: int
    cafile: str
    address: str = "127.0.0.1"
    # Longer than the stack's own limit (nginx answers 504 after
    # nginx_proxy_read_timeout, 35 s), so that the stack, not the client,
    # decides when a request has failed: a request that waited in Gunicorn's
    # backlog during a restart is slow, not lost. Under CI's two scenarios
    # at once on 2 cores such waits passed 15 s (Load.summary prints the
    # slowest request).
    timeout: float = 40.0
    _context: ssl.SSLContext = field(init=False, repr=False)

    def __post_init__(self):
        self._context = ssl.create_default_context(cafile=self.cafile)

    def tls_context(self, **versions):
        """A verifying context limited to the given TLS versions."""
        context = ssl.create_default_context(cafile=self.cafile)
        # Let the client offer old protocols at all, so that a refusal is the
        # server's doing.
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        for attribute, version in versions.items():
            setattr(context, attribute, version)
        return context

    def handshake(self, context):
        """Complete a TLS handshake; return the negotiated version."""
        with socket.create_connection((self.address, self.https_port), self.timeout) as sock:
            with context.wrap_socket(sock, server_hostname=self.domain) as tls:
                return tls.version()

    def connection(self):
        """An HTTPS connection to the site, for requests built by hand."""
        return _PinnedHTTPSConnection(
            self.domain, self.https_port, self.address, self._context, self.timeout
        )

    def request(self, method, path, body=None, headers=None, token=None, raw=None):
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if raw is not None:
            payload = raw.encode() if isinstance(raw, str) else raw
            headers.setdefault("Content-Type", "application/json")
        elif body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        else:
            payload = None
        connection = self.connection()
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()

    def plain_http(self, method, path, port=None):
        """A request without TLS, to the HTTP port unless another is given."""
        connection = http.client.HTTPConnection(self.address, port or self.http_port, timeout=self.timeout)
        try:
            connection.request(method, path, headers={"Host": self.domain})
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()

    def raw_request(self, data, tls=True):
        """Send bytes as they are, over HTTPS or to the HTTP port, and read
        the answer: for requests no HTTP client would send."""
        port = self.https_port if tls else self.http_port
        with socket.create_connection((self.address, port), self.timeout) as sock:
            stream = self._context.wrap_socket(sock, server_hostname=self.domain) if tls else sock
            with stream:
                stream.sendall(data)
                response = http.client.HTTPResponse(stream)
                response.begin()
                return Response(response.status, response.headers, response.read())

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body, **kwargs)

    def obtain_tokens(self, username, password):
        response = self.post("/api/token/", {"username": username, "password": password})
        assert response.status == 200, response.body
        return response.json()

    def serves_me(self, username, password):
        """Whether a login works and its access token gets GET /api/me/."""
        tokens = self.obtain_tokens(username, password)
        return self.get("/api/me/", token=tokens["access"]).status == 200


def site_for(host):
    """Build a Site for a testinfra host: its name, ports and certificate."""
    container = host.backend.get_hostname()
    domain = host.ansible("debug", "var=nginx_server_name")["nginx_server_name"]
    certificate = host.file(f"/etc/nginx/tls/{domain}.crt").content_string
    cafile = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    cafile.write(certificate)
    cafile.close()
    return Site(
        domain=domain,
        https_port=published_port(container, 443),
        http_port=published_port(container, 80),
        cafile=cafile.name,
    )


# JWTs made by hand, to show the server refuses what it did not sign.
def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def jwt_hs256(claims, key):
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


def jwt_header(token):
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


def jwt_es256_new_key(claims, kid):
    """A token claiming to be signed with the server's key `kid`, but signed
    with a key made here."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    header = _b64(json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(f"{header}.{body}".encode(), ec.ECDSA(hashes.SHA256())))
    return f"{header}.{body}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def jwt_unsigned(claims):
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


KEYRING = "/etc/drf-jwt/keyring.json"


def keyring(host):
    """The JWT keyring on an app host, parsed."""
    return json.loads(host.check_output(f"cat {KEYRING}"))


def keyring_secrets(host):
    """{"jwt key <kid>": a fragment of its key material} for each key of the
    host's keyring: the secret itself, or the longest line of a PEM body.
    A fragment of 40+ random characters shows up in no output by chance."""
    fragments = {}
    for key in keyring(host)["keys"]:
        material = key["key"]
        body = [line for line in material.splitlines() if line and not line.startswith("-----")]
        fragments[f"jwt key {key['kid']}"] = max(body, key=len) if body else material
    return fragments


# Running the project's playbooks against the scenario's own hosts.
def scenario_hosts():
    """The scenario's hosts with the variables Ansible reaches them by, as
    Molecule wrote them, for inventories a test writes itself."""
    path = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory", "ansible_inventory.yml")
    with open(path) as inventory:
        return yaml.safe_load(inventory)["all"]["hosts"]


def _playbook_command(playbook, *args, unset=(), inventory=None):
    if inventory is None:
        inventory = os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "inventory")
    argv = ["ansible-playbook", "-i", inventory, os.path.join(PROJECT_DIR, "playbooks", playbook), *args]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    for name in unset:
        env.pop(name, None)
    return argv, env


def gunicorn_main_pid(host):
    """Gunicorn's master process id on the host, 0 when it is not running:
    unchanged across a step means nothing restarted it."""
    return int(host.check_output("systemctl show --property MainPID --value gunicorn.service") or 0)


def run_playbook(playbook, *args, timeout=900, unset=(), inventory=None):
    """Run a playbook from playbooks/ with the scenario's inventory (or
    another), and without the environment variables named in `unset`."""
    argv, env = _playbook_command(playbook, *args, unset=unset, inventory=inventory)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=PROJECT_DIR)


@contextmanager
def converged_with(extra_vars):
    """site.yml run with `extra_vars` for the block's length, then run with
    the inventory alone again, which must put the host back."""
    try:
        result = run_playbook("site.yml", "-e", json.dumps(extra_vars))
        assert result.returncode == 0, result.stdout[-4000:]
        yield result
    finally:
        back = run_playbook("site.yml")
        assert back.returncode == 0, back.stdout[-4000:]


def start_playbook(playbook, *args):
    """Start a playbook in the background; its output is readable line by
    line from .stdout (stderr merged), so a test can act at a given task."""
    argv, env = _playbook_command(playbook, *args)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=PROJECT_DIR)


def cut_off_playbook(task, playbook, *args):
    """Run a playbook and stop it (SIGTERM, as a lost terminal does) when
    it starts `task` ("role : name"), before that task has run: what an
    interrupted run leaves behind."""
    run = start_playbook(playbook, *args)
    try:
        for line in run.stdout:
            if line.startswith(f"TASK [{task}]"):
                break
        else:
            raise AssertionError(f"{playbook} ended before the task {task!r}")
    finally:
        run.terminate()
        run.communicate(timeout=120)


@functools.lru_cache(maxsize=None)
def _scratch():
    """Where this test run's copies of the project go; Python removes it
    when the run ends."""
    return tempfile.TemporaryDirectory(prefix="drf-test-releases-")


def project_variant(name, change=None):
    """A copy of the rendered project (build/app) that differs from it by a
    VARIANT file and by what `change(path)` does, so that it is a new release."""
    target = os.path.join(tempfile.mkdtemp(dir=_scratch().name), name)
    shutil.copytree(os.path.join(PROJECT_DIR, "build", "app"), target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    with open(os.path.join(target, "VARIANT"), "w") as marker:
        marker.write(name + "\n")
    if change:
        change(target)
    return target


def add_migration(project, name, operations, preamble=""):
    """Give the project's accounts app the migration `name`: `operations` is
    the source of its operations list, `preamble` of what it needs above."""
    (accounts,) = glob.glob(os.path.join(project, "*", "accounts"))
    migrations = os.path.join(accounts, "migrations")
    os.makedirs(migrations, exist_ok=True)
    open(os.path.join(migrations, "__init__.py"), "w").close()
    with open(os.path.join(migrations, f"{name}.py"), "w") as migration:
        migration.write(
            f"from django.db import migrations\n\n\n{preamble}"
            "class Migration(migrations.Migration):\n"
            "    dependencies = []\n"
            f"    operations = {operations}\n"
        )


def git_commit(work, message):
    """Commit everything in the project copy `work`, making it a git
    repository first (branch `trunk`: not `main`, which a fork of an older
    project may not have); return the commit's hash."""
    if not os.path.isdir(os.path.join(work, ".git")):
        subprocess.run(["git", "-C", work, "init", "--quiet", "--initial-branch=trunk"], check=True)
    git = ["git", "-C", work, "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(git + ["add", "--all"], check=True)
    subprocess.run(git + ["commit", "--quiet", "--message", message], check=True)
    return subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def publish_git_repository(host, work, path="/srv/test-repo.git"):
    """Put a bare copy of the repository `work` at `path` on `host`, standing
    in for your git server; return its URL."""
    bare = os.path.join(tempfile.mkdtemp(dir=_scratch().name), "repo.git")
    subprocess.run(["git", "clone", "--quiet", "--bare", work, bare], check=True)
    copied = host.ansible("ansible.builtin.copy", f"src={bare}/ dest={path}/ mode=preserve",
                          become=True, check=False)
    assert not copied.get("failed"), copied
    return f"file://{path}"


def recap_counts(output):
    """{host: {"ok": n, "changed": n, ...}} from a PLAY RECAP."""
    counts = {}
    recap = output.rsplit("PLAY RECAP", 1)[-1]
    for line in recap.splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            counts[match.group(1)] = {
                key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))
            }
    return counts


@contextmanager
def table_locked(host, table, mode, database="app"):
    """A session on `host` holding `table` in lock `mode` (SQL's name, such
    as ACCESS SHARE), as a long transaction would, for the block's length."""
    psql = f"runuser -u postgres -- psql --no-psqlrc -At -d {database} -c"
    name = "drf-test-lock"
    held = ("SELECT count(*) FROM pg_locks JOIN pg_stat_activity USING (pid)"
            f" WHERE application_name = '{name}' AND relation = '{table}'::regclass AND granted")
    host.run_expect([0], f"systemd-run --unit {name} --setenv PGAPPNAME={name} {psql} "
                    + shlex.quote(f"BEGIN; LOCK TABLE {table} IN {mode} MODE; SELECT pg_sleep(300)"))
    try:
        assert wait_until(lambda: host.check_output(f"{psql} {shlex.quote(held)}") == "1", timeout=10)
        yield
    finally:
        # The server would notice its client leave only at its next check
        # (client_connection_check_interval): end the session now.
        host.run(f"{psql} \"SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                 f" WHERE application_name = '{name}'\"; systemctl stop {name}")


def database_answers(host):
    """Whether PostgreSQL on `host` accepts connections on its socket."""
    return host.run("pg_isready --quiet --host /run/postgresql").rc == 0


def booted(host):
    """Whether a (re)started host has finished booting, failed units or not."""
    try:
        return host.run("systemctl is-system-running --wait").rc in (0, 1)
    except Exception:  # noqa: BLE001 - SSH is not up yet while it boots
        return False


def wait_until(predicate, timeout, interval=0.2):
    """Poll `predicate` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Load:
    """A bounded load on the site from a few threads: each obtains a token,
    then calls GET /api/me/ with it, obtaining a fresh token every
    `token_every` requests. It stops when told to, after `max_seconds`, or
    after `max_requests`, whichever comes first.

    Each thread sends at most `rate` requests a second (None: as fast as the
    site answers). The tests need requests in flight all through a change,
    not the most the host can serve: unpaced, four threads spend both cores
    on password hashes and TLS handshakes, and the deploy they watch took 2x
    as long on an idle machine, about 8x beside another scenario. At the
    default, a request starts every 25 ms on average.

    Every request is recorded as (start time, end time, kind, outcome,
    X-Release, X-Served-By), where outcome is the HTTP status or the name of
    the exception (reset, refused, timeout) that ended it.
    """

    def __init__(self, site, username, password, threads=4, max_seconds=600,
                 max_requests=50000, token_every=25, rate=10):
        import threading

        self.site = site
        self.credentials = {"username": username, "password": password}
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.token_every = token_every
        self.rate = rate
        self.records = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self._deadline = None

    def __enter__(self):
        self._deadline = time.monotonic() + self.max_seconds
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def hold(self, seconds):
        """Let the load run for `seconds` more (less if it stops by itself)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end and not self._stop.is_set():
            time.sleep(0.1)

    def _record(self, started, kind, outcome, response=None):
        headers = response.headers if response is not None else {}
        entry = (started, time.monotonic(), kind, outcome,
                 headers.get("X-Release"), headers.get("X-Served-By"))
        with self._lock:
            self.records.append(entry)
            return len(self.records)

    def _call(self, kind, method, path, **kwargs):
        started = time.monotonic()
        try:
            response = self.site.request(method, path, **kwargs)
        except (OSError, http.client.HTTPException) as exc:
            count = self._record(started, kind, type(exc).__name__)
            return None, count
        count = self._record(started, kind, response.status, response)
        return response, count

    def _run(self):
        token, sent = None, 0
        interval = 1.0 / self.rate if self.rate else 0.0
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            if interval:
                next_at += interval
                # Waits on the stop event, so that stop() ends the wait.
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    break
            if token is None or sent % self.token_every == 0:
                response, count = self._call("token", "POST", "/api/token/", body=self.credentials)
                if response is not None and response.status == 200:
                    token = response.json()["access"]
            else:
                _, count = self._call("me", "GET", "/api/me/", token=token)
            sent += 1
            if count >= self.max_requests:
                self._stop.set()

    def failures(self, since=None):
        """Records whose outcome is not 200, optionally only those started
        at or after the monotonic time `since`."""
        return [r for r in self.records if r[3] != 200 and (since is None or r[0] >= since)]

    def served_by(self, since=None, until=None):
        """{X-Served-By: count} of the successful requests started in the
        monotonic interval [since, until)."""
        counts = {}
        for record in self.records:
            if record[3] == 200 and (since is None or record[0] >= since) \
                    and (until is None or record[0] < until):
                counts[record[5]] = counts.get(record[5], 0) + 1
        return counts

    def releases(self):
        """The X-Release values seen, in the order they first appeared."""
        seen = []
        for record in sorted(self.records):
            if record[4] and record[4] not in seen:
                seen.append(record[4])
        return seen

    def summary(self):
        outcomes = {}
        for record in self.records:
            outcomes[record[3]] = outcomes.get(record[3], 0) + 1
        slowest = max((end - start for start, end, *_ in self.records), default=0.0)
        return f"{len(self.records)} requests, outcomes {outcomes}, slowest {slowest:.1f} s"
