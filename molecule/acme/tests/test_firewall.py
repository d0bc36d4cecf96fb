"""The host firewall in the one-host layout, seen from a neighbour on the
same network (the test CA's container): SSH, HTTP and HTTPS answer, and
nothing else does, not even a service listening on every address."""
import subprocess

import pytest

from testlib import wait_until

PROBE_PORT = 8081


def _reaches(test_ca, address, port):
    """Whether a TCP connection from the neighbour to address:port succeeds."""
    result = subprocess.run(
        ["podman", "exec", test_ca["name"], "timeout", "4", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}"],
        capture_output=True,
    )
    return result.returncode == 0


@pytest.fixture
def listener_on_every_address(host):
    """A throwaway HTTP server bound to 0.0.0.0, as a careless service would be."""
    host.run_expect([0], f"systemd-run --unit drf-probe-listener python3 -m http.server {PROBE_PORT} --bind 0.0.0.0")
    try:
        assert wait_until(lambda: host.socket(f"tcp://0.0.0.0:{PROBE_PORT}").is_listening, timeout=10)
        yield PROBE_PORT
    finally:
        host.run("systemctl stop drf-probe-listener")


def test_only_ssh_http_and_https_answer_a_neighbour(host, test_ca, listener_on_every_address):
    # The host's address on the scenario's network (its only interface).
    address = host.check_output("hostname --all-ip-addresses").split()[0]
    # On the host itself the probe answers: only the firewall stands between.
    assert host.run(f"timeout 4 bash -c 'exec 3<>/dev/tcp/{address}/{listener_on_every_address}'").rc == 0
    for port in (22, 80, 443):
        assert _reaches(test_ca, address, port), port
    for port in (listener_on_every_address, 5432, 8000):
        assert not _reaches(test_ca, address, port), port
