"""Fixtures of the acme scenario: the host, the test CA beside it, and the
site as a client that trusts only that CA's root reaches it."""
import os
import ssl
import sys
import tempfile
import urllib.request

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_shared"))

from fixtures import MANAGE, api_user, tokens  # noqa: E402,F401
from testlib import Site, published_port  # noqa: E402

HOST_VARS = os.path.join(os.path.dirname(__file__), "..", "host_vars", "drf-acme.yml")


@pytest.fixture(scope="session")
def test_ca():
    """Name, address and listener CA file of the test ACME CA (pebble)."""
    with open(HOST_VARS, encoding="utf-8") as handle:
        settings = yaml.safe_load(handle)
    return {
        "name": settings["acme_test_ca_name"],
        "address": settings["acme_test_ca_address"],
        "domain": settings["site_domain"],
        "listener_ca": os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "pebble", "listener-ca.crt"),
    }


@pytest.fixture(scope="session")
def ca_root(test_ca):
    """The root the test CA signs with (made anew each time pebble starts),
    fetched from its management API over verified TLS."""
    context = ssl.create_default_context(cafile=test_ca["listener_ca"])
    with urllib.request.urlopen(f"https://{test_ca['address']}:15000/roots/0", context=context, timeout=10) as answer:
        root = answer.read().decode()
    assert "BEGIN CERTIFICATE" in root
    handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
    handle.write(root)
    handle.close()
    return handle.name


@pytest.fixture(scope="module")
def site(host, test_ca, ca_root):
    container = host.backend.get_hostname()
    return Site(test_ca["domain"], published_port(container, 443), published_port(container, 80), ca_root)
