"""The JWT token endpoints: obtain, refresh, verify, blacklist; and the
JSON shape of the errors Django answers outside DRF."""
import json

import pytest
from django.middleware.csrf import CsrfViewMiddleware

from conftest import PASSWORD
from config.jwt_tokens import RedeemedRefreshToken, RefreshToken

pytestmark = pytest.mark.django_db


def test_obtain_returns_access_and_refresh(client, user):
    response = client.post("/api/token/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}


def test_obtain_with_wrong_password_is_401(client, user):
    response = client.post("/api/token/", {"username": "alice", "password": "nope"})
    assert response.status_code == 401
    assert "detail" in response.json()


def test_obtain_for_unknown_user_is_401(client, db):
    response = client.post("/api/token/", {"username": "bob", "password": PASSWORD})
    assert response.status_code == 401


def test_refresh_returns_new_access(client, tokens):
    response = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    assert response.status_code == 200
    assert response.json()["access"] != tokens["access"]


def test_refresh_with_garbage_is_401(client, db):
    response = client.post("/api/token/refresh/", {"refresh": "not-a-token"})
    assert response.status_code == 401


def test_refresh_token_is_single_use(client, tokens):
    first = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    assert first.status_code == 200
    again = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    assert again.status_code == 401


def test_a_refresh_token_redeemed_twice_at_once_makes_one_pair(client, tokens, monkeypatch):
    # Two requests with the same refresh token (a thief's and its owner's)
    # can both pass the blacklist check before either blacklists it. The
    # one that finds it blacklisted when it comes to do so must be refused,
    # or the thief keeps a token family of their own.
    real_verify = RedeemedRefreshToken.verify
    winners = []

    def verify_then_let_another_request_redeem_it(token):
        real_verify(token)
        if not winners:
            winners.append(None)  # the other request's own check must not recurse
            winners[0] = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})

    monkeypatch.setattr(RedeemedRefreshToken, "verify", verify_then_let_another_request_redeem_it)
    loser = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    (winner,) = winners
    assert winner.status_code == 200
    assert loser.status_code == 401
    assert loser.json()["code"] == "token_not_valid"
    monkeypatch.undo()
    assert client.post("/api/token/refresh/", {"refresh": winner.json()["refresh"]}).status_code == 200


def test_verify_accepts_valid_token(client, tokens):
    response = client.post("/api/token/verify/", {"token": tokens["access"]})
    assert response.status_code == 200


def test_verify_rejects_tampered_token(client, tokens):
    tampered = tokens["access"][:-2] + ("AA" if not tokens["access"].endswith("AA") else "BB")
    response = client.post("/api/token/verify/", {"token": tampered})
    assert response.status_code == 401


def test_blacklisted_refresh_is_refused(client, tokens):
    response = client.post("/api/token/blacklist/", {"refresh": tokens["refresh"]})
    assert response.status_code == 200
    response = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    assert response.status_code == 401


def test_a_new_password_ends_the_old_sessions(client, tokens, user):
    user.set_password("another passphrase altogether")
    user.save()
    me = client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    assert me.status_code == 401
    refresh = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    assert refresh.status_code == 401
    assert refresh.json()["detail"] == "The user's password has been changed."
    login = client.post("/api/token/", {"username": user.username, "password": "another passphrase altogether"})
    assert login.status_code == 200


def test_tokens_from_before_the_check_keep_working_and_are_stamped_when_refreshed(client, user):
    # Issued while CHECK_REVOKE_TOKEN was off: no password claim. Turning
    # the check on must not log their owners out.
    refresh = RefreshToken.for_user(user)
    del refresh["hash_password"]
    me = client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {refresh.access_token}")
    assert me.status_code == 200
    renewed = client.post("/api/token/refresh/", {"refresh": str(refresh)})
    assert renewed.status_code == 200
    # Their successors carry the claim, so a new password now ends them.
    user.set_password("another passphrase altogether")
    user.save()
    again = client.post("/api/token/refresh/", {"refresh": renewed.json()["refresh"]})
    assert again.status_code == 401


def test_malformed_json_is_400_with_json_body(client, db):
    response = client.post(
        "/api/token/", data='{"username": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_a_body_over_djangos_limit_is_413_with_json_body(client, db, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"username": "alice", "password": "x" * 1000})
    response = client.post("/api/token/", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Request body too large; the limit is 1000 bytes."}


def test_unknown_path_is_404_with_json_body(client, db):
    response = client.get("/no/such/path")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_failed_csrf_check_is_403_with_json_body(rf):
    # DRF's views are exempt; a plain Django view a project adds is not.
    def plain_view(request):
        raise AssertionError("the check should have refused the request")

    request = rf.post("/a/plain/view")
    response = CsrfViewMiddleware(plain_view).process_view(request, plain_view, (), {})
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["detail"] == "CSRF verification failed: CSRF cookie not set."


def test_no_answer_carrying_tokens_or_a_user_may_be_stored(client, tokens):
    refreshed = client.post("/api/token/refresh/", {"refresh": tokens["refresh"]})
    me = client.get("/api/me/", HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    refused = client.get("/api/me/")
    for response in (refreshed, me, refused):
        assert response["Cache-Control"] == "no-store", response.status_code
    obtained = client.post("/api/token/", {"username": "alice", "password": PASSWORD})
    assert obtained.status_code == 200
    assert obtained["Cache-Control"] == "no-store"


def test_a_view_that_allows_caching_keeps_its_own_cache_control(client, db):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"


@pytest.mark.parametrize(
    "method, path, location",
    [
        ("post", "/api/token/verify", "/api/token/verify/"),
        ("get", "/api/me?page=2", "/api/me/?page=2"),
    ],
)
@pytest.mark.parametrize("debug", [False, True])
def test_a_path_without_its_slash_is_redirected_keeping_method_and_body(
    client, settings, debug, method, path, location
):
    # A 301 is followed with a GET: the POST would end as a 405. Under DEBUG
    # (runserver) too, where Django's own middleware raises for a POST.
    settings.DEBUG = debug
    response = getattr(client, method)(path)
    assert response.status_code == 308
    assert response["Location"] == location

