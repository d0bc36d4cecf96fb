"""config.postgresql: the per-request health check asks the socket, not the
server, and still replaces a connection the server has closed."""
import select
import time

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection, connections
from psycopg.errors import LockNotAvailable, QueryCanceled

from config.settings.base import database_from_env

# Real connections, opened and closed by the tests: no test transaction.
pytestmark = pytest.mark.django_db(transaction=True)


def _backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _health_check():
    """What Django does before a request first uses a kept connection."""
    connection.health_check_done = False
    connection.close_if_health_check_failed()


def test_the_backend_is_in_use():
    assert connection.settings_dict["ENGINE"] == "config.postgresql"
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True


def test_a_kept_idle_connection_passes_without_a_query(monkeypatch):
    pid = _backend_pid()
    kept = connection.connection

    def no_query(*args, **kwargs):
        raise AssertionError("the health check sent a query")

    monkeypatch.setattr(kept, "execute", no_query)
    monkeypatch.setattr(kept, "cursor", no_query)
    _health_check()
    monkeypatch.undo()
    assert connection.connection is kept
    assert _backend_pid() == pid


def test_a_connection_the_server_closed_is_replaced_before_use():
    pid = _backend_pid()
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        other.close()
    # The server's last message and its close reach the socket.
    readable, _, _ = select.select([connection.connection.fileno()], [], [], 10)
    assert readable
    _health_check()
    assert _backend_pid() != pid
    assert get_user_model().objects.count() == 0


def test_after_an_error_the_server_is_asked(monkeypatch):
    _backend_pid()
    asked = []
    real_cursor = connection.connection.cursor

    def counting_cursor(*args, **kwargs):
        asked.append(True)
        return real_cursor(*args, **kwargs)

    monkeypatch.setattr(connection.connection, "cursor", counting_cursor)
    connection.errors_occurred = True
    assert connection.is_usable()
    assert asked


@pytest.mark.parametrize(
    "variable, parameter, error",
    [
        # What a Gunicorn worker gets from the deploy: a query stuck behind
        # a lock is cancelled instead of waiting until the worker is killed.
        ("DJANGO_DB_STATEMENT_TIMEOUT", "statement_timeout", QueryCanceled),
        # What a migration gets: it gives up its wait instead of making every
        # query on the table queue behind it.
        ("DJANGO_DB_LOCK_TIMEOUT", "lock_timeout", LockNotAvailable),
    ],
)
def test_a_timeout_from_the_environment_cancels_a_lock_wait(monkeypatch, variable, parameter, error):
    monkeypatch.delenv("DJANGO_DB_STATEMENT_TIMEOUT", raising=False)
    monkeypatch.setenv(variable, "1")
    limited_settings = connection.settings_dict | {"OPTIONS": database_from_env()["OPTIONS"]}
    limited = type(connections["default"])(limited_settings, alias="limited")
    holder = connections.create_connection("default")
    try:
        holder.set_autocommit(False)
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE auth_user IN ACCESS EXCLUSIVE MODE")
        with limited.cursor() as cursor:
            cursor.execute(f"SHOW {parameter}")
            assert cursor.fetchone()[0] == "1s"
            started = time.monotonic()
            with pytest.raises(OperationalError) as raised:
                cursor.execute("SELECT count(*) FROM auth_user")
            assert 0.9 < time.monotonic() - started < 10
            assert isinstance(raised.value.__cause__, error)
        # The connection stays usable once the lock is gone.
        holder.rollback()
        with limited.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM auth_user")
            assert cursor.fetchone()[0] == 0
    finally:
        holder.close()
        limited.close()


def test_both_timeouts_together_and_none_by_default(monkeypatch):
    monkeypatch.setenv("DJANGO_DB_STATEMENT_TIMEOUT", "25")
    monkeypatch.setenv("DJANGO_DB_LOCK_TIMEOUT", "10")
    assert database_from_env()["OPTIONS"]["options"] == "-c statement_timeout=25s -c lock_timeout=10s"
    monkeypatch.delenv("DJANGO_DB_STATEMENT_TIMEOUT")
    monkeypatch.delenv("DJANGO_DB_LOCK_TIMEOUT")
    assert "options" not in database_from_env()["OPTIONS"]
