"""The ensure_user command that deploys use to manage the API users."""
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def _ensure(monkeypatch, password, *args):
    monkeypatch.setenv("DJANGO_ENSURE_USER_PASSWORD", password)
    out = StringIO()
    call_command("ensure_user", *args, stdout=out)
    return out.getvalue().strip()


def test_creates_then_reports_unchanged(monkeypatch, django_user_model):
    assert _ensure(monkeypatch, "first-password-123", "ops") == "created"
    assert _ensure(monkeypatch, "first-password-123", "ops") == "unchanged"
    assert django_user_model.objects.get(username="ops").check_password("first-password-123")


def test_new_password_is_an_update(monkeypatch, django_user_model):
    _ensure(monkeypatch, "first-password-123", "ops")
    assert _ensure(monkeypatch, "second-password-456", "ops") == "updated"
    assert django_user_model.objects.get(username="ops").check_password("second-password-456")


def test_email_change_is_an_update(monkeypatch):
    _ensure(monkeypatch, "first-password-123", "ops")
    assert _ensure(monkeypatch, "first-password-123", "ops", "--email", "o@x.org") == "updated"


def test_missing_password_is_refused(monkeypatch, db):
    monkeypatch.delenv("DJANGO_ENSURE_USER_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="DJANGO_ENSURE_USER_PASSWORD"):
        call_command("ensure_user", "ops")


def test_deactivate_keeps_the_user_and_ends_their_password(monkeypatch, django_user_model):
    _ensure(monkeypatch, "first-password-123", "leaver", "--email", "l@x.org")
    monkeypatch.delenv("DJANGO_ENSURE_USER_PASSWORD")
    out = StringIO()
    call_command("ensure_user", "leaver", "--deactivate", stdout=out)
    assert out.getvalue().strip() == "updated"
    user = django_user_model.objects.get(username="leaver")
    assert not user.is_active and not user.has_usable_password()
    assert user.email == "l@x.org"
    out = StringIO()
    call_command("ensure_user", "leaver", "--deactivate", stdout=out)
    assert out.getvalue().strip() == "unchanged"


def test_deactivating_a_user_never_made_changes_nothing(db, django_user_model):
    out = StringIO()
    call_command("ensure_user", "nobody", "--deactivate", stdout=out)
    assert out.getvalue().strip() == "unchanged"
    assert not django_user_model.objects.filter(username="nobody").exists()


def test_listing_a_deactivated_user_again_reactivates_them(monkeypatch, django_user_model):
    _ensure(monkeypatch, "first-password-123", "ops")
    call_command("ensure_user", "ops", "--deactivate", stdout=StringIO())
    assert _ensure(monkeypatch, "second-password-456", "ops") == "updated"
    user = django_user_model.objects.get(username="ops")
    assert user.is_active and user.check_password("second-password-456")
