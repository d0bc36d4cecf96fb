"""nginx's supplied-certificate mode, then back to the default self-signed one.

Runs last in the scenario (file order): it swaps the certificate the other
modules' fixtures pinned.
"""
import datetime
import json
import os
import ssl
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import pytest

from playbook_checks import assert_refused_before_any_change
from testlib import Site, published_port, recap_counts, run_playbook


def _pem(certificate):
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _certificate_for(domain, valid_days=90):
    """A CA of the test's own and a 90-day server certificate it signed, as a
    commercial CA would issue: (CA PEM, chain PEM, key PEM). A negative
    valid_days makes one that expired that many days ago."""
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = now + datetime.timedelta(days=valid_days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "drf test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now - datetime.timedelta(minutes=5), not_after - datetime.timedelta(days=30)))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return _pem(ca), _pem(leaf), key_pem


def _pem_file(text):
    handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    handle.write(text)
    handle.close()
    return handle.name


def _site(host, domain, cafile):
    container = host.backend.get_hostname()
    return Site(domain, published_port(container, 443), published_port(container, 80), cafile)


def _assert_mozilla_intermediate(site):
    """sslyze's check against Mozilla's intermediate profile: protocols,
    ciphers, curves, certificate type, signature, lifespan and chain (against
    the test CA, as a browser would against its store)."""
    sslyze = os.path.join(os.path.dirname(sys.executable), "sslyze")
    result = subprocess.run(
        [sslyze, "--mozilla_config=intermediate", f"--certinfo_ca_file={site.cafile}",
         f"{site.domain}:{site.https_port}{{{site.address}}}"],
        capture_output=True, text=True, timeout=300,
    )
    print(result.stdout[-1500:])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # sslyze exits 0 when it could not connect at all: require its verdict.
    assert "OK - Compliant." in result.stdout, result.stdout[-3000:]


def _verifies(site):
    try:
        return site.get("/healthz").status == 200
    except ssl.SSLCertVerificationError:
        return False


def _run_with_secret_vars(variables):
    """site.yml with extra vars from a 0600 file, as a vault would hand them over."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as extra:
        json.dump(variables, extra)
    os.chmod(extra.name, 0o600)
    try:
        return run_playbook("site.yml", "-e", f"@{extra.name}")
    finally:
        os.unlink(extra.name)


@pytest.mark.parametrize("prefix, mode", [("nginx", {"nginx_tls_mode": "provided"}), ("postgresql", {})])
@pytest.mark.parametrize(
    "case, variable, reason",
    [
        ("another key", "tls_key", "is not the key of"),
        ("expired", "tls_certificate", "expired on"),
    ],
)
def test_a_supplied_certificate_that_cannot_work_is_refused_before_any_change(
        host, prefix, mode, case, variable, reason):
    """Installed, it would replace the working certificate and the service
    would fail its next reload or start: refused in the pre-flight play."""
    domain = host.ansible("debug", "var=nginx_server_name")["nginx_server_name"]
    _, certificate, key = _certificate_for(domain, valid_days=-1 if case == "expired" else 90)
    if case == "another key":
        key = _certificate_for(domain)[2]
    result = _run_with_secret_vars({**mode, f"{prefix}_tls_certificate": certificate, f"{prefix}_tls_key": key})
    assert_refused_before_any_change(result, f"{prefix}_{variable}", reason)
    assert key.splitlines()[1] not in result.stdout + result.stderr


def test_supplied_certificate_is_served_and_self_signed_comes_back(host):
    domain = host.ansible("debug", "var=nginx_server_name")["nginx_server_name"]
    ca, certificate, key = _certificate_for(domain)
    supplied = _site(host, domain, _pem_file(ca))

    result = _run_with_secret_vars(
        {"nginx_tls_mode": "provided", "nginx_tls_certificate": certificate, "nginx_tls_key": key})
    assert result.returncode == 0, result.stdout[-3000:]
    key_body = key.splitlines()[1]
    assert key_body not in result.stdout + result.stderr
    assert _verifies(supplied)
    _assert_mozilla_intermediate(supplied)
    key_file = host.file(f"/etc/nginx/tls/{domain}.key")
    assert key_file.user == "root" and key_file.mode & 0o077 == 0

    # Back to the default: a self-signed certificate made on the host.
    result = run_playbook("site.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert all(count["failed"] == 0 for count in recap_counts(result.stdout).values())
    self_signed = _site(host, domain, _pem_file(host.file(f"/etc/nginx/tls/{domain}.crt").content_string))
    assert _verifies(self_signed)
    assert not _verifies(supplied)


def test_self_signed_certificates_are_reissued_near_their_end_and_for_a_new_lifetime(host):
    """community.crypto keeps a certificate that fits its key and names
    whatever its dates: a re-run must still issue nginx's and PostgreSQL's
    self-signed certificates anew a third of their lifetime before their end
    (before they lapse on a host that is only ever re-run) and when their
    lifetime setting changes, and the servers must then serve the new ones."""
    domain = host.ansible("debug", "var=nginx_server_name")["nginx_server_name"]
    conf = host.check_output("ls -d /etc/postgresql/*/main")
    # certificate file -> (its key, how to ask the server which one it serves)
    served = {
        f"/etc/nginx/tls/{domain}.crt": (
            f"/etc/nginx/tls/{domain}.key", f"-connect 127.0.0.1:443 -servername {domain}"),
        f"{conf}/server.crt": (f"{conf}/server.key", "-starttls postgres -connect 127.0.0.1:5432"),
    }
    tags = ("--tags", "nginx_tls,postgresql_tls")

    def days_left():
        """Whole days each server's certificate has left, as served."""
        left = []
        for certificate, (_, connect) in served.items():
            end = host.check_output(
                f"echo | openssl s_client {connect} 2>/dev/null | openssl x509 -noout -enddate")
            assert host.check_output(f"openssl x509 -noout -enddate -in {certificate}") == end
            ends = datetime.datetime.strptime(end.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")
            now = datetime.datetime.now(datetime.timezone.utc)
            left.append((ends.replace(tzinfo=datetime.timezone.utc) - now).days)
        return left

    # Both made to end tomorrow, as the role made them a year ago: same key,
    # names and extensions, so only the dates say they must go.
    for certificate, (key, _) in served.items():
        host.run_expect([0], f"openssl x509 -in {certificate} -signkey {key} -days 1 -out {certificate}.tmp"
                             f" && cat {certificate}.tmp > {certificate} && rm {certificate}.tmp")
    result = run_playbook("site.yml", *tags)
    assert result.returncode == 0, result.stdout[-3000:]
    assert days_left() == [364, 824]

    try:
        result = run_playbook("site.yml", *tags, "-e", '{"nginx_selfsigned_days": 30, "postgresql_tls_selfsigned_days": 60}')
        assert result.returncode == 0, result.stdout[-3000:]
        assert days_left() == [29, 59]
    finally:
        restored = run_playbook("site.yml", *tags)
    assert restored.returncode == 0, restored.stdout[-3000:]
    assert days_left() == [364, 824]
