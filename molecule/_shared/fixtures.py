"""pytest fixtures shared by every scenario (imported by each conftest.py)."""
import os
import secrets

import pytest

from testlib import site_for

MANAGE = "/usr/local/sbin/app-manage"

# For tests whose outcome cannot depend on the target's Debian release: input
# the pre-flight play refuses before any role runs, what Ansible prints, how
# a run takes up what an earlier one left. `make test` runs `default` on both
# releases, and each such test on one of them only, the one its mark names,
# which keeps the suite inside CI's time.
# run-scenarios.sh tells the tests every run of the suite (TEST_RUNS, as
# scenario:release); a scenario run on its own runs them all.
def _release_independent(release):
    runs = os.environ.get("TEST_RUNS", "").split()
    scenario = os.environ.get("MOLECULE_SCENARIO_NAME", "")
    elsewhere = (f"{scenario}:{release}" in runs
                 and os.environ.get("MOLECULE_DISTRO", "bookworm") != release)
    return pytest.mark.skipif(
        elsewhere, reason=f"does not depend on the Debian release; this suite runs it on {release}")


release_independent = _release_independent("bookworm")
# For a test that is release-independent in its outcome but reads files the
# releases place differently (PostgreSQL 15's and 17's), on the release with
# fewer tests.
release_independent_on_trixie = _release_independent("trixie")


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
