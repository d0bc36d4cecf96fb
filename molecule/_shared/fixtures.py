"""pytest fixtures shared by every scenario (imported by each conftest.py)."""
import os
import secrets

import pytest

from testlib import site_for

MANAGE = "/usr/local/sbin/app-manage"

# For tests whose outcome cannot depend on the target's Debian release: input
# the pre-flight play refuses before any role runs, and what Ansible prints.
# They run with the first release only (`make test` runs `default` on both),
# which keeps the suite inside CI's time.
FIRST_RELEASE = "bookworm"
release_independent = pytest.mark.skipif(
    os.environ.get("MOLECULE_DISTRO", FIRST_RELEASE) != FIRST_RELEASE,
    reason=f"does not depend on the Debian release; runs with {FIRST_RELEASE}",
)


@pytest.fixture(scope="module")
def site(host):
    return site_for(host)


@pytest.fixture(scope="module")
def api_user(host):
    return make_api_user(host)


def make_api_user(host):
    """A user made with the deploy's own ensure_user command on an app host."""
    username = "testinfra-" + secrets.token_hex(4)
    password = secrets.token_urlsafe(18)
    result = host.run(
        f"DJANGO_ENSURE_USER_PASSWORD={password} {MANAGE} ensure_user {username}"
    )
    assert result.rc == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "created"
    return {"username": username, "password": password}


@pytest.fixture
def tokens(site, api_user):
    return site.obtain_tokens(api_user["username"], api_user["password"])
