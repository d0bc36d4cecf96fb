"""Django's PostgreSQL backend, with a health check that costs no round trip.

With CONN_HEALTH_CHECKS, Django checks a kept connection before a request
first uses it by sending `SELECT 1`: one more round trip to the database on
every request, doubling the round trips of GET /api/me/, whose only query
loads the user (roles/app/README.md, "Tuned defaults", has the measurement).

This backend asks the operating system instead. A connection between
requests is idle: the server has nothing to say on it. When the server
closes it (a restart, pg_terminate_backend, idle_session_timeout), it sends
its last message and closes the socket, which then has something to read.
So a connection is kept only if it is open, idle, and its socket has
nothing to read; anything on it, even a harmless notice, makes Django open
a fresh one, which is safe. After an error, or inside a transaction, the
server is asked with `SELECT 1` as before.

Like `SELECT 1`, this cannot see a peer that vanished without closing (a
cable cut): the query then fails, the request errors, and Django drops the
connection when the request ends.
"""
import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self):
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if self.errors_occurred or connection.info.transaction_status != TransactionStatus.IDLE:
            # Not the plain case between two requests: ask the server.
            return super().is_usable()
        return _nothing_to_read(connection.fileno())


def _nothing_to_read(fd):
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
        # Hang-ups and errors are always reported; a 0 ms timeout: no wait.
        return not poller.poll(0)
    except (OSError, ValueError):
        return False
