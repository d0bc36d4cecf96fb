"""The API contract (molecule/_shared/api_contract.py), through the load
balancer in front of two app hosts."""
from api_contract import *  # noqa: F401,F403


def test_static_files_come_from_the_app_hosts(hosts, site):
    # The load balancer holds no release: Gunicorn (WhiteNoise) serves them.
    path = hosts["app1"].check_output(
        "find /srv/app/current/static/ -name '*.css' -printf '%P\\n' -quit"
    )
    assert path
    response = site.get(f"/static/{path}")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/css")
