"""Fixtures of the multihost scenario: a handle on each host by its part,
and the site as clients reach it, through the load balancer. Shared helpers
come from molecule/_shared/."""
import glob
import os
import sys

import pytest
import testinfra
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "_shared"))

from fixtures import make_api_user  # noqa: E402
from testlib import Load, site_for  # noqa: E402

HOST_VARS = os.path.join(os.path.dirname(__file__), "..", "host_vars")
# The scenario's hosts by their part in it (molecule.yml names them).
HOSTS = {"db": "drf-mh-db", "app1": "drf-mh-app1", "app2": "drf-mh-app2", "lb": "drf-mh-lb"}
APP_HOSTS = ("app1", "app2")


def _private_addresses():
    addresses = {}
    for path in glob.glob(os.path.join(HOST_VARS, "*.yml")):
        with open(path, encoding="utf-8") as host_vars:
            name = os.path.basename(path)[: -len(".yml")]
            addresses[name] = yaml.safe_load(host_vars)["private_address"]
    return {part: addresses[name] for part, name in HOSTS.items()}


@pytest.fixture(scope="session")
def hosts():
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return {
        part: testinfra.get_host(f"ansible://{name}", ansible_inventory=inventory, sudo=True)
        for part, name in HOSTS.items()
    }


@pytest.fixture(scope="session")
def addresses():
    """Each host's private address, as the inventory gives it."""
    return _private_addresses()


@pytest.fixture(scope="module")
def site(hosts):
    return site_for(hosts["lb"])


@pytest.fixture(scope="module")
def api_user(hosts):
    return make_api_user(hosts["app1"])


@pytest.fixture
def tokens(site, api_user):
    return site.obtain_tokens(api_user["username"], api_user["password"])


@pytest.fixture(scope="module")
def load(site, api_user):
    def start(**kwargs):
        return Load(site, api_user["username"], api_user["password"], **kwargs)
    return start
