"""Certificates from an ACME CA: issued by the test CA through a real HTTP-01
validation against the deployed nginx, served, renewed under load without a
failed request, and left to certbot's timer."""
import re
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from testlib import Load, run_playbook, wait_until

# Highest systemd-analyze exposure accepted for certbot.service (as for
# gunicorn.service), although it runs as root: it owns /etc/letsencrypt.
SANDBOX_MOST = 2.0


def _served_certificate(site, verify=True):
    """The leaf certificate nginx serves, after a handshake that verifies the
    chain against the test CA's root and the name against the domain (or,
    with verify=False, whoever issued it)."""
    context = ssl.create_default_context(cafile=site.cafile)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((site.address, site.https_port), site.timeout) as sock:
        with context.wrap_socket(sock, server_hostname=site.domain) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _served_common_name(site):
    """The common name of the certificate nginx serves, whoever issued it
    (None for the test CA's, which names the domain only in the SAN)."""
    names = _served_certificate(site, verify=False).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return names[0].value if names else None


def _certificate_on_host(host, path):
    return x509.load_pem_x509_certificate(host.check_output(f"cat {path}").encode() + b"\n")


def _names(certificate):
    return certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )


@pytest.fixture
def load(site, api_user):
    def start(**kwargs):
        return Load(site, api_user["username"], api_user["password"], **kwargs)
    return start


def test_the_test_ca_certificate_is_served(host, site, test_ca):
    served = _served_certificate(site)
    issuer = served.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert issuer.startswith("Pebble Intermediate"), issuer
    assert _names(served) == [test_ca["domain"]]
    assert served == _certificate_on_host(host, f"/etc/letsencrypt/live/{test_ca['domain']}/cert.pem")
    assert site.get("/healthz").status == 200


def test_the_ca_validated_the_challenge_on_port_80(host, test_ca):
    # The CA's own requests for the HTTP-01 answer, in nginx's access log.
    log = host.check_output("cat /var/log/nginx/access.log")
    answered = re.findall(
        rf'^{re.escape(test_ca["address"])} .*"GET /\.well-known/acme-challenge/\S+ HTTP/1\.1" 200 ', log, re.M
    )
    assert answered, "the CA never fetched a challenge answer from nginx"


def test_port_80_serves_challenges_and_redirects_the_rest(site):
    missing = site.plain_http("GET", "/.well-known/acme-challenge/no-such-token")
    assert missing.status == 404
    # Like every error nginx answers itself.
    assert missing.headers["Content-Type"] == "application/json"
    assert missing.json() == {"detail": "Not found."}
    assert missing.headers["X-Request-ID"]
    response = site.plain_http("GET", "/api/me/")
    assert response.status == 301
    assert response.headers["Location"] == f"https://{site.domain}/api/me/"


def test_renewals_are_scheduled(host):
    timer = host.service("certbot.timer")
    assert timer.is_enabled
    assert host.run("systemctl is-active certbot.timer").stdout.strip() == "active"
    hook = host.file("/etc/letsencrypt/renewal-hooks/deploy/50-install-certificate")
    assert (hook.user, hook.mode) == ("root", 0o755)


def test_a_timer_renewal_replaces_the_certificate_without_a_failed_request(host, site, load, test_ca):
    renewal = f"/etc/letsencrypt/renewal/{test_ca['domain']}.conf"
    before = _served_certificate(site)
    # The test CA's certificates live for years: make this one due now, so
    # that the unit certbot.timer starts renews it as it would in its last
    # 30 days.
    host.run_expect([0], f"sed -i '1i renew_before_expiry = 36500 days' {renewal}")
    try:
        with load(threads=4) as running:
            running.hold(3)
            # A oneshot: returns once certbot has renewed, the deploy hook
            # has installed the certificate and nginx has reloaded.
            result = host.run("systemctl start certbot.service")
            running.hold(3)
    finally:
        host.run(f"sed -i '/^renew_before_expiry = 36500 days$/d' {renewal}")
    print(f"renewal under load: {running.summary()}; failed: {len(running.failures())}")
    assert result.rc == 0, host.run("journalctl --unit certbot.service --no-pager --lines 40").stdout
    assert running.failures() == [], running.summary()

    after = _served_certificate(site)
    assert after.serial_number != before.serial_number
    assert after == _certificate_on_host(host, f"/etc/letsencrypt/live/{test_ca['domain']}/cert.pem")
    key = host.file(f"/etc/nginx/tls/{test_ca['domain']}.key")
    assert (key.user, key.group, key.mode) == ("root", "root", 0o600)


def test_a_certificate_installed_but_not_reloaded_is_loaded_by_the_next_run(host, site, test_ca):
    """A run cut off between installing the CA's certificate and reloading
    nginx left nginx on the old one (on a first run, the self-signed one)
    until the next renewal: the next run found the files as they should be
    and notified nobody. Made by hand: nginx made to load another
    certificate, then the installed one written back as the role writes it."""
    certificate, key = (f"/etc/nginx/tls/{test_ca['domain']}.{kind}" for kind in ("crt", "key"))
    host.run_expect([0], "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1"
                         " -subj /CN=cut-off -keyout /root/other.key -out /root/other.crt 2>/dev/null")
    host.run_expect([0], f"cp -p {certificate} /root/kept.crt && cp -p {key} /root/kept.key"
                         f" && cp /root/other.crt {certificate} && cp /root/other.key {key} && systemctl reload nginx")
    try:
        assert wait_until(lambda: _served_common_name(site) == "cut-off", timeout=30)
    finally:
        host.run_expect([0], f"cp /root/kept.crt {certificate} && cp /root/kept.key {key}"
                             " && rm /root/kept.* /root/other.*")
    result = run_playbook("site.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    assert _served_certificate(site) == _certificate_on_host(host, f"/etc/letsencrypt/live/{test_ca['domain']}/cert.pem")


def test_certbot_runs_sandboxed(host):
    # systemd's own rating of the unit's sandbox (0 = locked down, 10 = none).
    report = host.check_output("systemd-analyze security --no-pager certbot.service")
    level = float(re.search(r"Overall exposure level for certbot.service: ([0-9.]+)", report).group(1))
    print(f"certbot.service: exposure {level}")
    assert level <= SANDBOX_MOST
