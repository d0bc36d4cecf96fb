"""Production settings: refuse to start half-configured, pass check --deploy.

Each case runs manage.py in a fresh process, because settings are read once
per process.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.jwt_keys import new_key_entry

PROJECT_DIR = Path(__file__).resolve().parent.parent.parent

PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "p" * 20 + "roduction-secret-key-for-settings-tests-0123456789",
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "DJANGO_DB_NAME": "app",
    "DJANGO_DB_USER": "app",
    "DJANGO_DB_PASSWORD": "a-database-password",
    "DJANGO_DB_HOST": "/run/postgresql",
}


@pytest.fixture(autouse=True)
def keyring_file(tmp_path, monkeypatch):
    """A valid keyring file, named in PRODUCTION_ENV for every test here."""
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps({"version": 1, "keys": [new_key_entry("ES256")]}))
    monkeypatch.setitem(PRODUCTION_ENV, "DJANGO_JWT_KEYRING_FILE", str(path))
    return path


def manage(*args, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_passes_without_warnings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION_ENV)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    "variable",
    [
        "DJANGO_SECRET_KEY",
        "DJANGO_ALLOWED_HOSTS",
        "DJANGO_DB_NAME",
        "DJANGO_DB_USER",
        "DJANGO_DB_PASSWORD",
        "DJANGO_DB_HOST",
        "DJANGO_JWT_KEYRING_FILE",
    ],
)
def test_missing_variable_stops_startup_naming_it(variable):
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != variable}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert f"The environment variable {variable} is required" in result.stderr


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("DJANGO_DB_CONN_MAX_AGE", "soon", "must be a whole number"),
        ("DJANGO_DB_STATEMENT_TIMEOUT", "soon", "must be a whole number"),
        ("DJANGO_DB_STATEMENT_TIMEOUT", "-5", "must be 0 or more, got -5"),
        ("DJANGO_DB_LOCK_TIMEOUT", "-1", "must be 0 or more, got -1"),
    ],
)
def test_a_bad_database_number_is_named(variable, value, message):
    result = manage("check", env=PRODUCTION_ENV | {variable: value})
    assert result.returncode != 0
    assert f"{variable} {message}" in result.stderr


def test_unknown_log_format_is_named():
    result = manage("check", env=PRODUCTION_ENV | {"DJANGO_LOG_FORMAT": "xml"})
    assert result.returncode != 0
    assert "DJANGO_LOG_FORMAT must be json or plain" in result.stderr


def test_an_unreadable_keyring_stops_startup_naming_the_file(keyring_file):
    keyring_file.write_text("{not json")
    result = manage("check", env=PRODUCTION_ENV)
    assert result.returncode != 0
    assert f"The JWT keyring {keyring_file} is not valid JSON" in result.stderr
