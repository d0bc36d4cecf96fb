"""The shared database stops: every app host answers the app's 503, the
load balancer passes it on and takes no app host out, and the API is back
as soon as the database is."""
from conftest import HOSTS
from testlib import database_answers, wait_until


def test_a_database_outage_is_the_apps_503_and_ends_with_it(hosts, site, tokens):
    db = hosts["db"]
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
    finally:
        db.run_expect([0], "systemctl start postgresql")
    assert wait_until(lambda: database_answers(db), timeout=30)
    # Both hosts serve the very next requests: none was left out.
    served_by = set()
    for _ in range(6):
        response = site.get("/api/me/", token=tokens["access"])
        assert response.status == 200, response.body
        served_by.add(response.headers["X-Served-By"])
    assert served_by == {HOSTS["app1"], HOSTS["app2"]}
