"""Liveness and readiness probes for nginx, systemd and the deploy gate.

They are plain Django views (no authentication, no DRF) so that they stay
cheap and answer even when the API layer is misconfigured.
"""
import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    """200 while the process can answer requests at all."""
    return JsonResponse({"status": "ok"})


@require_GET
def readyz(request):
    """200 only when the database answers a query, 503 otherwise."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("readiness check failed: %s", exc)
        # Drop the broken connection so the next probe starts afresh.
        connection.close()
        return JsonResponse({"status": "unavailable", "database": "down"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})
