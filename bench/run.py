"""`make bench`: measure the deployed stack against its alternatives, in one run.

Against the demo host (rebuilt from scratch, so the cold deploy is measured
too), back to back, with one load generator (wrk, run on the host itself so
that every target pays the same for it):

- serving: GET /api/me/ with a Bearer token through nginx (TLS), Gunicorn,
  Django and PostgreSQL; the same app under `manage.py runserver` (DEBUG
  off); nginx answering a fixed response over the same TLS setup; and a bare
  WSGI hello-world under the same Gunicorn settings behind the same nginx;
  and, to split the gap to that ceiling, the stack asked for /healthz
  (Django without the API's token, user query and serializer);
- login: POST /api/token/ rate and latency, and the password hasher's share;
- deploy: a cold site.yml, an immediate no-op re-run, an app-only deploy.yml;
- changes under load: failed requests while a release is deployed, while
  Gunicorn restarts and while the JWT keys are rotated gracefully.

Results go to docs/benchmarks.md and docs/benchmarks.png. The run exits
non-zero if any measurement saw an error it did not expect.
"""
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "molecule", "_shared"))

from testlib import Load, Site, recap_counts  # noqa: E402

SSH_PORT = os.environ.get("DEMO_SSH_PORT", "2222")
KEY = os.path.join(REPO, "build", "demo", "id_ed25519")
SECRETS = os.path.join(REPO, "inventory", "demo", ".secrets")
DURATION = int(os.environ.get("BENCH_SECONDS", "15"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
THREADS = 2
# The stack and the bare WSGI ceiling, whose ratio is the point, are measured
# in alternating rounds and each reported by its median round: this host's
# speed drifts by a fifth or more within minutes, which one run of each,
# minutes apart, turned into ratios from 8% to 16% on the same code.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
ROUND_SECONDS = int(os.environ.get("BENCH_ROUND_SECONDS", "10"))
SSH = ["ssh", "-i", KEY, "-p", SSH_PORT, "-o", "StrictHostKeyChecking=no",
       "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
       "ops@127.0.0.1"]

problems = []


def remote(command, check=True, timeout=600):
    """Run a shell command on the demo host as root; return its stdout."""
    result = subprocess.run(SSH + ["sudo sh -c " + shlex.quote(command)], capture_output=True,
                            text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{command!r} failed: {result.stderr.strip()}")
    return result.stdout


def timed(argv, **kwargs):
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, **kwargs)
    return time.monotonic() - started, result


# One load generator is one client: the per-client limit on /api/token/
# would measure nginx's limiter, not the login, so the bench lifts it.
BENCH_VARS = ["-e", "nginx_token_rate=100000r/s"]


def playbook(name, *args):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", DEMO_SSH_PORT=SSH_PORT)
    seconds, result = timed(["ansible-playbook", "-i", "inventory/demo/hosts.yml", f"playbooks/{name}",
                             *BENCH_VARS, *args], env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    changed = sum(count["changed"] for count in recap_counts(result.stdout).values())
    return seconds, changed


# wrk prints latency percentiles with units; everything is turned into ms.
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text):
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * _UNITS[unit]


WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %d, \\"seconds\\": %f, \\"p50\\": %f, \\"p99\\": %f, "
    .. "\\"connect\\": %d, \\"read\\": %d, \\"write\\": %d, \\"timeout\\": %d, \\"status\\": %d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, summary.errors.status))
end
"""


def wrk(name, url, headers=(), body=None, closes_connections=False, connections=CONNECTIONS,
        duration=DURATION):
    """One wrk run on the host; returns rate, latency and error counts.

    A server that closes every connection after its response (runserver)
    makes wrk count each close as a read error; for it, only the other
    kinds count."""
    script = WRK_REPORT
    if body is not None:
        script += f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
        script += 'wrk.headers["Content-Type"] = "application/json"\n'
    # wrk counts only 4xx and 5xx as errors: make sure the target answers
    # 200 (not a redirect) before measuring it.
    curl_args = " ".join(f"-H '{h}'" for h in headers)
    if body is not None:
        curl_args += f" -H 'Content-Type: application/json' --data '{body}'"
    status = remote("curl -s --cacert /etc/nginx/tls/localhost.crt -o /dev/null -w '%{http_code}' "
                    f"{curl_args} '{url}'").strip()
    if status != "200":
        problems.append(f"{name}: answered {status} instead of 200 before the run")
    remote(f"cat > /tmp/bench.lua <<'EOF'\n{script}\nEOF")
    header_args = " ".join(f"-H '{h}'" for h in headers)
    out = remote(f"wrk -t{min(THREADS, connections)} -c{connections} -d{duration}s --timeout 10s -s /tmp/bench.lua "
                 f"{header_args} '{url}'", timeout=duration + 120)
    data = json.loads(out.split("JSON ", 1)[1].splitlines()[0])
    kinds = ("connect", "write", "timeout", "status") + (() if closes_connections else ("read",))
    errors = sum(data[k] for k in kinds)
    result = {
        "name": name,
        "rps": data["requests"] / data["seconds"],
        "p50": data["p50"],
        "p99": data["p99"],
        "errors": errors,
        "requests": data["requests"],
    }
    if errors:
        problems.append(f"{name}: {errors} errors ({data})")
    print(f"  {name}: {result['rps']:.0f} req/s, p50 {result['p50']:.1f} ms, "
          f"p99 {result['p99']:.1f} ms, {errors} errors", flush=True)
    return result


BENCH_NGINX = """
worker_processes auto;
pid /run/bench-nginx.pid;
error_log /var/log/nginx/bench-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server_tokens off;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_prefer_server_ciphers off;
    ssl_session_cache shared:BENCH:10m;
    ssl_session_tickets off;
    server {
        listen 127.0.0.1:9443 ssl;
        ssl_certificate /etc/nginx/tls/localhost.crt;
        ssl_certificate_key /etc/nginx/tls/localhost.key;
        location / { default_type application/json; return 200 '{"ok": true}'; }
    }
}
"""

HELLO_DROPIN = "/run/systemd/system/gunicorn.service.d/bench-hello.conf"
HELLO_UNIT = """[Service]
WorkingDirectory=/opt/bench-hello
ExecStart=
ExecStart=/srv/app/current/venv/bin/gunicorn --config /etc/drf-app/gunicorn.conf.py --chdir /opt/bench-hello hello:application
"""

HELLO_WSGI = """
def application(environ, start_response):
    body = b'{"ok": true}'
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""


def wait_ready():
    """Until the stack answers /readyz through nginx (Gunicorn has booted)."""
    remote("for i in $(seq 300); do curl -sf -o /dev/null --cacert /etc/nginx/tls/localhost.crt "
           "https://localhost/readyz && exit 0; sleep 0.1; done; exit 1")


def wait_all_workers():
    """Until every Gunicorn worker of the running service has loaded its
    app: a measurement that starts earlier pays for the others' imports
    (about half a CPU-second each)."""
    remote("workers=$(sed -n 's/^workers = //p' /etc/drf-app/gunicorn.conf.py); "
           "for i in $(seq 300); do "
           "id=$(systemctl show -p InvocationID --value gunicorn.service); "
           "ready=$(journalctl -q -o cat _SYSTEMD_INVOCATION_ID=$id | grep -c 'Worker ready'); "
           '[ "$ready" -ge "$workers" ] && exit 0; sleep 0.1; done; exit 1')


def serve_hello():
    """gunicorn.service runs the bare WSGI app instead of Django, with the
    same configuration file, workers, socket and sandbox."""
    remote(f"mkdir -p /opt/bench-hello && cat > /opt/bench-hello/hello.py <<'EOF'\n{HELLO_WSGI}\nEOF\n"
           "chmod -R a+rX /opt/bench-hello && mkdir -p /run/systemd/system/gunicorn.service.d && "
           f"cat > {HELLO_DROPIN} <<'EOF'\n{HELLO_UNIT}\nEOF\n"
           "systemctl daemon-reload && systemctl restart gunicorn.service")
    wait_all_workers()


def serve_app():
    remote(f"rm -f {HELLO_DROPIN}; systemctl daemon-reload; systemctl restart gunicorn.service")
    wait_ready()
    wait_all_workers()


def median_round(rounds):
    """The round with the median rate, with every round's rate and the
    errors and requests of all of them."""
    middle = sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]
    return dict(middle, rounds=[round(r["rps"]) for r in rounds],
                errors=sum(r["errors"] for r in rounds), requests=sum(r["requests"] for r in rounds))


STACK = "stack (nginx TLS + Gunicorn + Django + PostgreSQL)"
BARE = "bare WSGI on Gunicorn behind the same nginx"
# The same stack asked for /healthz: Django's middleware and request log line
# without the API's own work (token, user query, DRF, serializer), to show
# which part of the gap to the bare ceiling is Django's and which the API's.
DJANGO_ALONE = "Django alone, GET /healthz (same stack; no token, no database)"


def serving(token):
    print("serving", flush=True)
    results = []

    # runserver: the same release, settings and database; DEBUG is off in
    # production settings. It is told the request came over HTTPS, as nginx
    # tells Gunicorn, or SECURE_SSL_REDIRECT would answer every call with 301.
    # Two settings differ, as they would for anyone running runserver: the
    # client (wrk on 127.0.0.1) is its proxy, and connections are not kept
    # between requests (Django's default; runserver starts a thread per
    # connection, and kept connections would exhaust PostgreSQL's).
    remote("systemd-run --unit bench-runserver --collect --property EnvironmentFile=/etc/drf-app/app.env "
           "--property User=django --working-directory /srv/app/current/src "
           "env DJANGO_TRUSTED_PROXIES=127.0.0.1 DJANGO_DB_CONN_MAX_AGE=0 "
           "/srv/app/current/venv/bin/python manage.py runserver 127.0.0.1:8001 --noreload")
    remote("for i in $(seq 100); do curl -sf -o /dev/null -H 'Host: localhost' -H 'X-Forwarded-Proto: https' "
           "http://127.0.0.1:8001/healthz && exit 0; sleep 0.1; done; exit 1")
    try:
        results.append(wrk("runserver (same app, DEBUG off)", "http://127.0.0.1:8001/api/me/",
                           headers=[f"Authorization: Bearer {token}", "X-Forwarded-Proto: https",
                                    "Host: localhost", "Connection: close"],
                           closes_connections=True))
    finally:
        remote("systemctl stop bench-runserver", check=False)

    # Ceiling 1: nginx alone, answering a fixed response over the same TLS.
    remote(f"cat > /tmp/bench-nginx.conf <<'EOF'\n{BENCH_NGINX}\nEOF")
    remote("nginx -c /tmp/bench-nginx.conf")
    try:
        results.append(wrk("nginx fixed response (same TLS)", "https://localhost:9443/"))
    finally:
        remote("nginx -c /tmp/bench-nginx.conf -s quit", check=False)

    # The stack, and ceiling 2: a bare WSGI app in place of Django, run by
    # gunicorn.service itself behind the site's own nginx, asked the same URL
    # with the same header. Alternating rounds, each target by its median.
    stack_rounds, alone_rounds, bare_rounds = [], [], []
    wait_all_workers()
    try:
        for number in range(1, ROUNDS + 1):
            stack_rounds.append(wrk(f"{STACK}, round {number}", "https://localhost/api/me/",
                                    headers=[f"Authorization: Bearer {token}"], duration=ROUND_SECONDS))
            alone_rounds.append(wrk(f"{DJANGO_ALONE}, round {number}", "https://localhost/healthz",
                                    duration=ROUND_SECONDS))
            serve_hello()
            bare_rounds.append(wrk(f"{BARE}, round {number}", "https://localhost/api/me/",
                                   headers=[f"Authorization: Bearer {token}"], duration=ROUND_SECONDS))
            serve_app()
    finally:
        # Django back in place if a round failed while the hello was serving.
        remote(f"if [ -e {HELLO_DROPIN} ]; then rm -f {HELLO_DROPIN}; systemctl daemon-reload; "
               "systemctl restart gunicorn.service; fi", check=False)
    results.insert(0, dict(median_round(stack_rounds), name=STACK))
    results.insert(1, dict(median_round(alone_rounds), name=DJANGO_ALONE))
    results.append(dict(median_round(bare_rounds), name=BARE))
    return results


WORKERS_DROPIN = "/run/systemd/system/gunicorn.service.d/bench-workers.conf"


def demo_user():
    """The demo's API user, read as the demo inventory reads it: the user
    `make demo` was given (DEMO_USERNAME, DEMO_PASSWORD) or "demo"."""
    def secret(name):
        with open(os.path.join(SECRETS, name)) as stored:
            return stored.read().strip()
    username = secret("demo_username") if os.path.exists(os.path.join(SECRETS, "demo_username")) else "demo"
    return {"username": username, "password": secret("demo_password")}


def fresh_token(user):
    return json.loads(remote(
        "curl -s --cacert /etc/nginx/tls/localhost.crt -H 'Content-Type: application/json' "
        f"-d {shlex.quote(json.dumps(user))} https://localhost/api/token/"
    ))["access"]


def workers_under_logins(user):
    """GET /api/me/ while two clients log in non-stop, with as many Gunicorn
    workers as cores and with the role's default (2 x cores + 1): the
    measurement behind that default. A login holds a sync worker for a
    whole password hash."""
    print("workers under logins", flush=True)
    cores = int(remote("nproc").strip())
    default = int(remote("grep -E '^workers' /etc/drf-app/gunicorn.conf.py | cut -d= -f2").strip())
    body = json.dumps(user)
    remote("cat > /tmp/bench-login.lua <<'EOF'\nwrk.method = \"POST\"\n"
           f"wrk.body = {json.dumps(body)}\nwrk.headers[\"Content-Type\"] = \"application/json\"\nEOF")
    rows = []
    try:
        for workers in (cores, default):
            remote("mkdir -p /run/systemd/system/gunicorn.service.d && "
                   f"printf '[Service]\\nExecStart=\\nExecStart=/srv/app/current/venv/bin/gunicorn "
                   f"--config /etc/drf-app/gunicorn.conf.py --workers {workers}\\n' > {WORKERS_DROPIN} && "
                   "systemctl daemon-reload && systemctl restart gunicorn.service")
            wait_ready()
            token = fresh_token(user)
            remote(f"(wrk -t1 -c2 -d{DURATION + 4}s -s /tmp/bench-login.lua https://localhost/api/token/ "
                   "< /dev/null > /tmp/bench-login.out 2>&1 &)")
            me = wrk(f"GET /api/me/ while 2 clients log in, {workers} workers", "https://localhost/api/me/",
                     headers=[f"Authorization: Bearer {token}"], connections=8)
            remote("while pgrep -x wrk >/dev/null; do sleep 0.5; done")
            logins = remote("cat /tmp/bench-login.out")
            rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", logins).group(1))
            if "Non-2xx" in logins or "Socket errors" in logins:
                problems.append(f"logins beside {workers} workers: {logins.strip()}")
            rows.append({"workers": workers, "rps": me["rps"], "p50": me["p50"], "p99": me["p99"],
                         "logins": rate})
    finally:
        remote(f"rm -f {WORKERS_DROPIN}; systemctl daemon-reload; systemctl restart gunicorn.service",
               check=False)
        wait_ready()
    return rows


def login(user):
    print("login", flush=True)
    body = json.dumps(user)
    result = wrk("POST /api/token/", "https://localhost/api/token/", body=body)
    # One login at a time: its latency without queueing behind others.
    result["alone_p50"] = wrk("POST /api/token/, one client", "https://localhost/api/token/", body=body,
                              connections=1)["p50"]
    # The hasher's own cost: Django's check_password on the same hash. A
    # wrong candidate costs the same (the hash is computed, then compared)
    # and keeps the password off the host's command line.
    out = remote(
        "/usr/local/sbin/app-manage shell -c \"import time; from django.contrib.auth import get_user_model; "
        f"u = get_user_model().objects.get(username='{user['username']}'); "
        "u.check_password('not-the-password'); "  # warm-up: imports and the first-call costs
        "t = time.perf_counter(); [u.check_password('not-the-password') for _ in range(5)]; "
        "print('HASH', (time.perf_counter() - t) / 5 * 1000)\"")
    result["hash_ms"] = float(out.split("HASH ", 1)[1].split()[0])
    return result


def deploys():
    print("deploy", flush=True)
    subprocess.run([os.path.join(REPO, "molecule", "_shared", "demo.sh"), "down"], check=True,
                   capture_output=True)
    # Start the host and deploy once, timing only site.yml (demo.sh's own
    # set-up and checks are not part of it).
    started = time.monotonic()
    subprocess.run([os.path.join(REPO, "molecule", "_shared", "demo.sh"), "host"], check=True)
    host_ready = time.monotonic() - started
    cold, cold_changed = playbook("site.yml")
    noop, noop_changed = playbook("site.yml")
    if noop_changed:
        problems.append(f"no-op site.yml changed {noop_changed} things")
    release = tempfile.mkdtemp(prefix="bench-release-")
    shutil.copytree(os.path.join(REPO, "build", "app"), release, dirs_exist_ok=True)
    with open(os.path.join(release, "BENCH_RELEASE"), "w") as marker:
        marker.write(str(time.time()))
    app_only, _ = playbook("deploy.yml", "-e", f"app_source_dir={release}")
    return {"host_ready": host_ready, "cold": cold, "cold_changed": cold_changed,
            "noop": noop, "noop_changed": noop_changed, "deploy": app_only, "release_dir": release}


def changes_under_load(user, release_dir):
    print("changes under load", flush=True)
    # The demo's own certificate goes back at the end: the curl lines
    # `make demo` printed trust it (build/demo/localhost.crt).
    remote(f"mkdir -p {BENCH_CA} && chmod 0700 {BENCH_CA} && "
           f"cp -p /etc/nginx/tls/localhost.key {BENCH_CA}/demo.key && "
           f"cp -p /etc/nginx/tls/localhost.crt {BENCH_CA}/demo.crt")
    try:
        return _changes_under_load(user, release_dir)
    finally:
        restore_certificate()


def _changes_under_load(user, release_dir):
    # A CA-signed certificate first, so that the client still trusts the
    # site after the renewal row replaces it.
    install_certificate()
    cert = os.path.join(REPO, "build", "demo", "bench-ca.crt")
    with open(cert, "w") as out:
        out.write(remote(f"cat {BENCH_CA}/ca.crt"))
    site = Site("localhost", 8443, 8080, cert)
    rows = []

    def measure(name, action):
        # Two seconds of load on each side of the change, to catch what
        # fails just before or just after it. Unpaced (the tests pace it):
        # here the change should meet as many requests as the host answers.
        with Load(site, user["username"], user["password"], threads=4, max_seconds=300, rate=None) as load:
            load.hold(2)
            action()
            load.hold(2)
        failures = len(load.failures())
        rows.append({"name": name, "requests": len(load.records), "failed": failures})
        if failures:
            problems.append(f"{name}: {failures} failed requests ({load.summary()})")
        print(f"  {name}: {len(load.records)} requests, {failures} failed", flush=True)

    with open(os.path.join(release_dir, "BENCH_RELEASE"), "w") as marker:
        marker.write(str(time.time()))
    measure("release deploy (deploy.yml)",
            lambda: playbook("deploy.yml", "-e", f"app_source_dir={release_dir}"))
    measure("Gunicorn restart (systemctl restart)", lambda: remote("systemctl restart gunicorn.service"))
    measure("graceful JWT key rotation (rotate_jwt_keys.yml)", lambda: playbook("rotate_jwt_keys.yml"))
    # What the acme role's renewal hook does (the demo host has no CA to ask):
    # a new key and certificate for the same name from the same CA, swapped
    # in by renames, then nginx reloaded.
    measure("certificate renewal (new certificate installed, nginx reloaded)", install_certificate)
    return rows


BENCH_CA = "/root/bench-ca"


def install_certificate():
    """Install a new key and certificate for localhost, signed by a CA made
    for the bench (the client trusts it), as a renewal does, and reload nginx."""
    remote(
        f"mkdir -p {BENCH_CA} && cd {BENCH_CA} && umask 077 && "
        "{ [ -f ca.crt ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-days 2 -subj '/CN=bench CA' -keyout ca.key -out ca.crt 2>/dev/null; } && "
        "printf 'subjectAltName=DNS:localhost\\n' > leaf.ext && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost "
        "-keyout leaf.key -out leaf.csr 2>/dev/null && "
        "openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 90 "
        "-extfile leaf.ext -out leaf.crt 2>/dev/null"
    )
    swap_certificate(f"{BENCH_CA}/leaf.key", f"{BENCH_CA}/leaf.crt")


def restore_certificate():
    """Put back the demo's own key and certificate (saved by
    changes_under_load)."""
    swap_certificate(f"{BENCH_CA}/demo.key", f"{BENCH_CA}/demo.crt")


def swap_certificate(key, crt):
    """Make `key` and `crt` localhost's, each by a rename (nginx never reads
    a half-written file), then reload nginx. The key stays private to root."""
    remote(
        f"cp -p {key} /etc/nginx/tls/.swap.key && mv -f /etc/nginx/tls/.swap.key /etc/nginx/tls/localhost.key && "
        f"cp -p {crt} /etc/nginx/tls/.swap.crt && chmod 0644 /etc/nginx/tls/.swap.crt && "
        "mv -f /etc/nginx/tls/.swap.crt /etc/nginx/tls/localhost.crt && systemctl reload nginx"
    )


def chart(serving_results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["name"].split(" (")[0] for r in serving_results]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rates = [r["rps"] for r in serving_results]
    left.barh(names, rates, color="#3b6ea5")
    # A log scale: the ceilings are orders of magnitude above the app.
    left.set_xscale("log")
    left.set_xlabel("requests per second (log scale)")
    for i, rate in enumerate(rates):
        left.text(rate, i, f" {rate:.0f}", va="center")
    left.invert_yaxis()
    y = range(len(names))
    right.barh([i - 0.2 for i in y], [r["p50"] for r in serving_results], height=0.4, label="p50")
    right.barh([i + 0.2 for i in y], [r["p99"] for r in serving_results], height=0.4, label="p99")
    right.set_yticks(list(y), names)
    right.invert_yaxis()
    right.set_xlabel("latency (ms)")
    right.legend()
    fig.suptitle(f"GET /api/me/ and ceilings, wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s "
                 f"(stack, Django alone and bare WSGI: median of {ROUNDS} rounds of {ROUND_SECONDS} s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(serving_results, worker_rows, login_result, deploy_result, change_rows):
    stack, alone, runserver, fixed, bare = serving_results
    lines = [
        "# Benchmarks",
        "",
        f"Made by `make bench` on {datetime.date.today().isoformat()}; "
        f"{os.cpu_count()} cores, {platform.machine()}, {platform.platform()}. "
        f"Load: wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, run on the demo host itself so that "
        "every target pays the same for the load generator; the stack, Django alone and the bare WSGI "
        "ceiling in "
        f"{ROUNDS} alternating rounds of {ROUND_SECONDS} s each, every round after all Gunicorn workers "
        "have loaded their app, each reported by its median round. All rows come from one run.",
        "",
        "![throughput and latency per target](benchmarks.png)",
        "",
        "## Serving `GET /api/me/` (valid Bearer token)",
        "",
        "| target | req/s | p50 ms | p99 ms | errors |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in serving_results:
        lines.append(f"| {r['name']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} |")
    lines += [
        "",
        f"- stack / runserver: **{stack['rps'] / runserver['rps']:.2f}×**",
        f"- stack / bare WSGI behind the same nginx: **{stack['rps'] / bare['rps'] * 100:.0f}%** "
        f"(rounds, req/s: stack {', '.join(map(str, stack['rounds']))}; "
        f"bare WSGI {', '.join(map(str, bare['rounds']))})",
        f"- Django alone (`/healthz`: middleware and the request's log line, no token, no database) / "
        f"bare WSGI: {alone['rps'] / bare['rps'] * 100:.0f}% (rounds, req/s: "
        f"{', '.join(map(str, alone['rounds']))}); what the API itself adds to a request (token, user "
        f"query, DRF, serializer) takes it from there to the stack's "
        f"{stack['rps'] / bare['rps'] * 100:.0f}%",
        f"- nginx fixed response (TLS ceiling): {fixed['rps']:.0f} req/s",
        "",
        "Goals (issue #8, on this 2-core machine): stack / runserver 4× or more "
        f"({'met' if stack['rps'] >= 4 * runserver['rps'] else 'NOT met'}), stack / bare WSGI 35% or more "
        f"({'met' if stack['rps'] >= 0.35 * bare['rps'] else 'NOT met'}).",
        "",
        "## Gunicorn workers, with logins beside the reads",
        "",
        "`GET /api/me/` (8 clients) while 2 more clients log in non-stop, with as many workers as "
        "cores and with the app role's default, 2 x cores + 1. A login holds its sync worker for "
        "a whole password hash.",
        "",
        "| workers | /api/me/ req/s | p50 ms | p99 ms | logins/s |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *[f"| {r['workers']} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['logins']:.1f} |"
          for r in worker_rows],
        "",
        "## Login (`POST /api/token/`)",
        "",
        "Measured with the per-client rate limit on token requests lifted "
        "(`nginx_token_rate=100000r/s`): the load generator is a single client.",
        "",
        f"{login_result['rps']:.1f} logins/s with {CONNECTIONS} clients (p50 {login_result['p50']:.0f} ms, "
        f"p99 {login_result['p99']:.0f} ms, {login_result['errors']} errors); one client alone: "
        f"p50 {login_result['alone_p50']:.0f} ms. One password check (Django's PBKDF2) takes "
        f"{login_result['hash_ms']:.0f} ms (timed in a separate process, so only roughly comparable): "
        "nearly all of a login on an idle host, and at the sustained rate the checks alone need "
        f"{login_result['rps'] * login_result['hash_ms'] / 1000:.1f} CPU-seconds per second of the host's "
        f"{os.cpu_count()} cores: logins are bound by the hasher, by design.",
        "",
        "## Deploying (over SSH, as the tests do)",
        "",
        "| run | seconds | changed |",
        "| --- | ---: | ---: |",
        f"| cold site.yml on a fresh Debian 12 host | {deploy_result['cold']:.0f} | {deploy_result['cold_changed']} |",
        f"| no-op site.yml right after | {deploy_result['noop']:.0f} | {deploy_result['noop_changed']} |",
        f"| app-only release (deploy.yml) | {deploy_result['deploy']:.0f} | |",
        "",
        "Goals: cold under 140 s "
        f"({'met' if deploy_result['cold'] < 140 else 'NOT met'}), no-op under 25 s with nothing changed "
        f"({'met' if deploy_result['noop'] < 25 and not deploy_result['noop_changed'] else 'NOT met'}), "
        f"app-only release under 45 s ({'met' if deploy_result['deploy'] < 45 else 'NOT met'}).",
        "",
        "## Changes under load (4 client threads, token + GET /api/me/ over HTTPS)",
        "",
        "| change | requests | failed |",
        "| --- | ---: | ---: |",
    ]
    for row in change_rows:
        lines.append(f"| {row['name']} | {row['requests']} | {row['failed']} |")
    lines += ["", "The demo host has no ACME CA to ask, so the renewal row installs a new "
              "certificate and reloads nginx exactly as the acme role's renewal hook does; "
              "the `acme` Molecule scenario renews through a real (test) CA under load.", ""]
    if problems:
        lines += ["## Unexpected errors in this run", ""] + [f"- {p}" for p in problems] + [""]
    return "\n".join(lines)


def main():
    deploy_result = deploys()
    user = demo_user()
    remote("command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)")
    with open(os.path.join(REPO, "build", "demo", "localhost.crt"), "w") as cert:
        cert.write(remote("cat /etc/nginx/tls/localhost.crt"))
    token = fresh_token(user)
    serving_results = serving(token)
    worker_rows = workers_under_logins(user)
    login_result = login(user)
    change_rows = changes_under_load(user, deploy_result["release_dir"])
    docs = os.path.join(REPO, "docs")
    os.makedirs(docs, exist_ok=True)
    chart(serving_results, os.path.join(docs, "benchmarks.png"))
    with open(os.path.join(docs, "benchmarks.md"), "w") as out:
        out.write(report(serving_results, worker_rows, login_result, deploy_result, change_rows))
    # The figures themselves, for comparing runs.
    with open(os.path.join(docs, "benchmarks.json"), "w") as out:
        json.dump({"date": datetime.date.today().isoformat(), "serving": serving_results,
                   "workers_under_logins": worker_rows, "login": login_result, "deploy": {k: v for k, v in deploy_result.items() if k != "release_dir"},
                   "changes_under_load": change_rows, "problems": problems}, out, indent=2)
    print("wrote docs/benchmarks.md and docs/benchmarks.png")
    # The rebuilt host has new secrets: the demo user's earlier password is gone.
    print("the demo host was rebuilt with new secrets: `make demo` prints its user's password and curl lines")
    if problems:
        print("unexpected errors:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
