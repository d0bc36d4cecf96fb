"""DatabaseUserAuthentication, the default: the user is loaded from the
database on every request, as simplejwt's JWTAuthentication loads it, and
refused when it is gone, inactive or (CHECK_REVOKE_TOKEN, on in settings)
has changed its password."""
import pytest
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIRequestFactory
from rest_framework_simplejwt import tokens as simplejwt_tokens
from rest_framework_simplejwt.exceptions import InvalidToken

from config import jwt_tokens
from config.jwt_tokens import AccessToken, DatabaseUserAuthentication, RefreshToken, UserLoader

pytestmark = pytest.mark.django_db


def _authenticate(token, scheme="Bearer"):
    request = APIRequestFactory().get("/", HTTP_AUTHORIZATION=f"{scheme} {token}")
    return DatabaseUserAuthentication().authenticate(request)


def _fields(user):
    return {name: value for name, value in vars(user).items() if name != "_state"}


def test_the_user_is_loaded_as_the_orm_loads_it(tokens, user, django_user_model, django_assert_num_queries):
    user.last_login = user.date_joined
    user.save()
    with django_assert_num_queries(1):
        loaded, token = _authenticate(tokens["access"])
    expected = django_user_model.objects.get(pk=user.pk)
    assert type(loaded) is django_user_model
    assert _fields(loaded) == _fields(expected)
    assert loaded == expected and not loaded._state.adding and loaded._state.db == "default"
    assert str(token["user_id"]) == str(user.pk)


def test_a_deactivated_user_is_refused_at_once(tokens, user):
    user.is_active = False
    user.save()
    with pytest.raises(AuthenticationFailed) as refused:
        _authenticate(tokens["access"])
    assert refused.value.get_codes() == "user_inactive"


def test_a_deleted_user_is_refused(tokens, user):
    user.delete()
    with pytest.raises(AuthenticationFailed) as refused:
        _authenticate(tokens["access"])
    assert refused.value.get_codes() == "user_not_found"


def test_a_token_without_a_user_or_with_a_malformed_one_is_refused(user):
    token = AccessToken.for_user(user)
    del token["user_id"]
    with pytest.raises(InvalidToken):
        _authenticate(str(token))
    token["user_id"] = "not-a-number"
    with pytest.raises(AuthenticationFailed):
        _authenticate(str(token))
    assert UserLoader.for_model(type(user)).load(None) is None


def test_a_new_password_revokes_the_access_token(user):
    access = str(RefreshToken.for_user(user).access_token)
    assert _authenticate(access)[0] == user
    user.set_password("another passphrase altogether")
    user.save()
    with pytest.raises(AuthenticationFailed) as refused:
        _authenticate(access)
    assert refused.value.get_codes() == "password_changed"


def test_without_check_revoke_token_a_new_password_revokes_nothing(user, monkeypatch):
    # simplejwt's modules keep the settings object they imported (an
    # override_settings makes a new one they never see): switch it there.
    for holder in (jwt_tokens, simplejwt_tokens):
        monkeypatch.setattr(holder.api_settings, "CHECK_REVOKE_TOKEN", False)
    access = str(RefreshToken.for_user(user).access_token)
    user.set_password("another passphrase altogether")
    user.save()
    assert _authenticate(access)[0] == user


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_read_without_regard_to_case(tokens, user, scheme):
    loaded, _ = _authenticate(tokens["access"], scheme)
    assert loaded.pk == user.pk


@pytest.mark.parametrize("scheme", ["Basic", "Bearerx", "Token"])
def test_another_scheme_is_not_taken_for_a_token(tokens, scheme):
    assert _authenticate(tokens["access"], scheme) is None


def test_a_scheme_in_any_case_with_extra_values_is_refused(tokens):
    with pytest.raises(AuthenticationFailed) as refused:
        _authenticate(f"{tokens['access']} extra", "bearer")
    # simplejwt's own refusal, whose detail carries its code.
    assert refused.value.detail["code"] == "bad_authorization_header"
