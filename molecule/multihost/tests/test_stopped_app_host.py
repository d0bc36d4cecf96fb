"""An app host goes away under load: first its Gunicorn, then its whole
container. The load balancer keeps every request succeeding once it has
noticed; while it notices, no more requests fail than were in flight.

Runs last (file order): it stops and restarts hosts.
"""
import subprocess
import time

import pytest

from conftest import HOSTS
from testlib import booted, wait_until

THREADS = 4
# nginx_upstream_connect_timeout plus a margin: the longest a request can
# wait on the vanished host before nginx tries the other one.
NOTICE_SECONDS = 3


def _both_hosts_serve(site):
    return {site.get("/healthz").headers["X-Served-By"] for _ in range(10)} == {HOSTS["app1"], HOSTS["app2"]}


def _outage(load, stop, seconds=12):
    """Run `stop` under load; return the load and the failover window."""
    with load(threads=THREADS) as running:
        running.hold(3)
        window_start = time.monotonic()
        stop()
        window_end = time.monotonic() + NOTICE_SECONDS
        running.hold(seconds)
    during = running.failures(since=window_start)
    after = running.failures(since=window_end)
    print(f"{running.summary()}; failed during the failover window: {len(during) - len(after)}, "
          f"after it: {len(after)}; served after it: {running.served_by(since=window_end)}")
    return running, window_start, window_end


@pytest.fixture
def app2_back(hosts, site):
    """Whatever the test stopped on app2, it is running again afterwards."""
    yield
    subprocess.run(["podman", "start", HOSTS["app2"]], check=True, capture_output=True)
    assert wait_until(lambda: booted(hosts["app2"]), timeout=120)
    hosts["app2"].run_expect([0], "systemctl start gunicorn.socket gunicorn.service")
    assert wait_until(lambda: _both_hosts_serve(site), timeout=60)


def _upstream_refusals(lb, offset):
    """How many times the load balancer's nginx met a refused connection to
    an app host since byte `offset` of its error log."""
    return int(lb.check_output(
        f"tail -c +{offset + 1} /var/log/nginx/error.log | grep -c 'connect() failed (111' || true"
    ))


def test_one_refused_connection_takes_a_host_out_for_every_lb_worker(hosts, site, app2_back):
    """The load balancer's workers share what they learn about a host: after
    one refused connection, no worker tries app2 again within fail_timeout.
    Requests on fresh connections land on any worker, so without the shared
    upstream zone each worker would meet the refusal once."""
    lb = hosts["lb"]
    assert int(lb.check_output("pgrep -c -f '^nginx: worker process'")) >= 2, "needs several workers"
    assert wait_until(lambda: _both_hosts_serve(site), timeout=60)
    offset = int(lb.check_output("stat -c %s /var/log/nginx/error.log"))
    hosts["app2"].run_expect([0], "systemctl stop gunicorn.socket gunicorn.service")
    started = time.monotonic()
    statuses = [site.get("/healthz").status for _ in range(40)]
    # Past fail_timeout (10 s) a worker rightly tries the host again.
    assert time.monotonic() - started < 10
    assert statuses == [200] * 40
    assert _upstream_refusals(lb, offset) == 1


def test_a_stopped_gunicorn_fails_no_request(hosts, site, load, app2_back):
    assert _both_hosts_serve(site)
    running, start, end = _outage(
        load, lambda: hosts["app2"].run_expect([0], "systemctl stop gunicorn.socket gunicorn.service")
    )
    assert len(running.failures(since=start)) <= THREADS, running.summary()
    assert running.failures(since=end) == [], running.summary()
    assert running.served_by(since=end).keys() == {HOSTS["app1"]}


def test_a_stopped_app_host_fails_no_request_after_the_failover(hosts, site, load, app2_back):
    assert _both_hosts_serve(site)
    running, start, end = _outage(
        load, lambda: subprocess.run(["podman", "stop", "--time", "10", HOSTS["app2"]],
                                     check=True, capture_output=True)
    )
    assert len(running.failures(since=start)) <= THREADS, running.summary()
    assert running.failures(since=end) == [], running.summary()
    assert running.served_by(since=end).keys() == {HOSTS["app1"]}
