"""The API contract (molecule/_shared/api_contract.py) on the one-host
layout, and what only this layout can show: the database stopped under the
app, static files from the release on disk."""
from api_contract import *  # noqa: F401,F403
from testlib import wait_until


def test_readyz_is_503_while_the_database_is_down(host, site):
    def database_answers():
        return host.run("pg_isready --quiet --host /run/postgresql").rc == 0

    host.run_expect([0], "systemctl stop postgresql")
    try:
        assert wait_until(lambda: not database_answers(), timeout=30)
        response = site.get("/readyz")
        assert response.status == 503
        assert response.json()["database"] == "down"
        assert site.get("/healthz").status == 200
    finally:
        host.run_expect([0], "systemctl start postgresql")
    assert wait_until(database_answers, timeout=30)
    assert wait_until(lambda: site.get("/readyz").status == 200, timeout=10)


def test_static_files_are_served_by_nginx(host, site):
    # DRF ships static files; collectstatic put them where nginx serves them.
    path = host.check_output(
        "find /srv/app/current/static/ -name '*.css' -printf '%P\\n' -quit"
    )
    assert path
    response = site.get(f"/static/{path}")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/css"
