"""The shared database stops: every app host answers the app's 503, the
load balancer passes it on and takes no app host out, and the API is back
as soon as the database is. A deploy meanwhile stops before switching,
saying why in one line, not with Django's traceback."""
from conftest import HOSTS
from testlib import database_answers, recap_counts, run_playbook, wait_until


def test_a_database_outage_is_the_apps_503_and_ends_with_it(hosts, site, tokens):
    db = hosts["db"]
    release = site.get("/healthz").headers["X-Release"]
    db.run_expect([0], "systemctl stop postgresql")
    try:
        assert wait_until(lambda: not database_answers(db), timeout=30)
        # Had nginx counted a 503 as the host's failure, it would have
        # taken both hosts out after the first request and answered its
        # own 502 from then on.
        for _ in range(6):
            response = site.get("/api/me/", token=tokens["access"])
            assert response.status == 503, response.body
            assert int(response.headers["Retry-After"]) > 0
            assert "database" in response.json()["detail"]
        result = run_playbook("deploy.yml")
        output = result.stdout + result.stderr  # the failure is on stderr
        assert result.returncode != 0
        assert "could not read which migrations the database" in output, output[-4000:]
        assert "OperationalError: connection" in output and "Traceback" not in output
        assert all(counts["changed"] == 0 for counts in recap_counts(result.stdout).values())
    finally:
        db.run_expect([0], "systemctl start postgresql")
    assert wait_until(lambda: database_answers(db), timeout=30)
    # Both hosts serve the very next requests: none was left out.
    served_by = set()
    for _ in range(6):
        response = site.get("/api/me/", token=tokens["access"])
        assert response.status == 200, response.body
        served_by.add(response.headers["X-Served-By"])
        assert response.headers["X-Release"] == release
    assert served_by == {HOSTS["app1"], HOSTS["app2"]}
