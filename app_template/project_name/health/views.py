"""Liveness and readiness probes for nginx, systemd and the deploy gate.

They are plain Django views (no authentication, no DRF) so that they stay
cheap and answer even when the API layer is misconfigured.
"""
import functools
import logging

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

logger = logging.getLogger(__name__)


def get_only(view):
    """GET only, with a JSON 405 for anything else. Exempt from CSRF: the
    probes read nothing from cookies, and the check would answer a POST 403
    before the view could say 405."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "GET":
            response = JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405)
            response["Allow"] = "GET"
            return response
        return view(request, *args, **kwargs)

    return wrapper


@get_only
def healthz(request):
    """200 while the process can answer requests at all."""
    return JsonResponse({"status": "ok"})


@get_only
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
