"""JSON error bodies for everything the API can answer with.

DRF already renders its own exceptions as JSON; this adds a stable shape and
covers the errors Django raises outside DRF (unknown URL, bad Host header,
failed CSRF check, uncaught exception), which would otherwise be HTML pages.
"""
import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def json_exception_handler(exc, context):
    response = exception_handler(exc, context)
    if response is not None and not isinstance(response.data, dict):
        response.data = {"detail": response.data}
    return response


def bad_request(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        # A body nginx let through (its limit is for uploads, which Django
        # does not count here) but over what Django reads into memory: the
        # client sent too much, which is a 413, not a malformed request.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return JsonResponse({"detail": f"Request body too large; the limit is {limit} bytes."}, status=413)
    return JsonResponse({"detail": "Bad request."}, status=400)


def permission_denied(request, exception=None):
    return JsonResponse({"detail": "Permission denied."}, status=403)


def csrf_failure(request, reason=""):
    # settings.CSRF_FAILURE_VIEW: a POST to a plain Django view without a
    # CSRF token (DRF's views are exempt) is refused in JSON too.
    return JsonResponse({"detail": f"CSRF verification failed: {reason}"}, status=403)


def not_found(request, exception=None):
    return JsonResponse({"detail": "Not found."}, status=404)


def server_error(request):
    return JsonResponse({"detail": "Internal server error."}, status=500)
