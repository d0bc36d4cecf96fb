"""Middleware of the project: request ids, the release and host headers,
the client address behind proxies, unread request bodies, caching, slash
redirects that keep the method, and answers while the database is out of
reach.

Release headers say which release on which host answered.

Deploys and load balancers are verified by them: a rolling release is seen
switching from one X-Release to the next, and requests spread across hosts
show different X-Served-By values. Turn them off with
DJANGO_RELEASE_HEADERS=false if you would rather not publish them.
"""
import ipaddress
import logging
import re
import socket
import time
import uuid

from django.conf import settings
from django.db import OperationalError
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.middleware.common import CommonMiddleware
from django.utils.http import escape_leading_slashes
from django.utils.log import log_response
from psycopg.errors import QueryCanceled

from config.logging import request_id

access_log = logging.getLogger("api.access")

# What a request id may look like; anything else is replaced, so that log
# lines cannot be forged through the header.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class TrustedProxyMiddleware:
    """The client's address and scheme, as the proxy in front saw them.

    Behind nginx, REMOTE_ADDR is the proxy's address, or empty when the local
    nginx connects over Gunicorn's Unix socket (which only the web server's
    group may open). From such a peer, or one in settings.TRUSTED_PROXIES,
    X-Real-IP becomes REMOTE_ADDR; from any other peer the forwarding headers
    are dropped, so that nobody can forge a client address or an https
    scheme by sending them.
    """

    FORWARDING_HEADERS = ("HTTP_X_REAL_IP", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO")

    def __init__(self, get_response):
        self.get_response = get_response
        self.networks = [ipaddress.ip_network(item, strict=False) for item in settings.TRUSTED_PROXIES]

    def trusted(self, peer):
        if peer == "":
            return True
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def __call__(self, request):
        meta = request.META
        if self.trusted(meta.get("REMOTE_ADDR", "")):
            try:
                meta["REMOTE_ADDR"] = str(ipaddress.ip_address(meta.get("HTTP_X_REAL_IP", "").strip()))
            except ValueError:
                pass
        else:
            for name in self.FORWARDING_HEADERS:
                meta.pop(name, None)
        return self.get_response(request)


class DrainRequestBodyMiddleware:
    """Read what is left of the request's body before the response goes out.

    Many answers need no body: a 401 without a token, a 405, a 413 for a body
    over DATA_UPLOAD_MAX_MEMORY_SIZE. Gunicorn then closes the connection
    with the body's bytes still unread, the kernel resets it, and nginx, still
    sending the body, may lose the response: the client gets a 502 instead,
    and across app hosts nginx counts the host as failing. The rest of the
    body is at most nginx's client_max_body_size, and reading it costs less
    than the 502.
    """

    CHUNK = 64 * 1024

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.META.get("CONTENT_LENGTH", "") not in ("", "0"):
            try:
                # Bounded by the declared length; empty at once when the
                # view read the body itself.
                while request.read(self.CHUNK):
                    pass
            except OSError:
                pass  # the client went away: there is no answer to save
        return response


class NoStoreByDefaultMiddleware:
    """Cache-Control: no-store on every response that does not choose.

    Token responses must not be stored (RFC 6749, 5.1, for responses that
    carry tokens), nor may a user's own data be kept by a shared cache or a
    browser's. A view whose answer may be cached says so itself (the JWKS
    view does); this only fills the gap.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response


class DatabaseUnavailableMiddleware:
    """503 with Retry-After, not 500, when the database cannot be reached.

    A stopped or restarting PostgreSQL, a lost connection, a server out of
    connections: the request may well succeed a moment later, and a client,
    a monitor or nginx (which tries an idempotent request on the next app
    host after a 503) should know that from the status. A 500 stays for what
    is the app's fault. A cancelled query (statement_timeout) stays a 500
    too: sending it to the next host would only repeat the slow query there.
    """

    RETRY_AFTER_SECONDS = 5

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError) or isinstance(exception.__cause__, QueryCanceled):
            return None
        response = JsonResponse(
            {"detail": "Service temporarily unavailable: the database cannot be reached."}, status=503
        )
        response["Retry-After"] = str(self.RETRY_AFTER_SECONDS)
        # As Django logs a 500 (same logger, message and traceback), once.
        log_response("Service Unavailable: %s", request.path, response=response, request=request, exception=exception)
        return response


def _redirect_keeping_the_request(url):
    return HttpResponsePermanentRedirect(url, preserve_request=True)


class SlashRedirectCommonMiddleware(CommonMiddleware):
    """Django's CommonMiddleware, whose APPEND_SLASH redirect is a 308.

    Clients follow Django's default 301 with a GET, so a POST to a path
    without its slash (/api/token/verify) would end as a 405; after a 308
    they repeat the same method and body at the slashed path.
    """

    response_redirect_class = staticmethod(_redirect_keeping_the_request)

    def get_full_path_with_slash(self, request):
        # Django's own raises under DEBUG for a POST, PUT or PATCH, whose body
        # its 301 would lose; the 308 keeps it, so runserver answers as
        # production does.
        return escape_leading_slashes(request.get_full_path(force_append_slash=True))


class ReleaseHeadersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.headers = {
            "X-Release": settings.RELEASE_ID,
            "X-Served-By": socket.gethostname(),
        }

    def __call__(self, request):
        response = self.get_response(request)
        for name, value in self.headers.items():
            response[name] = value
        return response


class RequestIdMiddleware:
    """Keep the request's X-Request-ID for its log lines, return it to the
    client, and log one line per request."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        rid = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = rid
            access_log.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "client_ip": request.META.get("REMOTE_ADDR", ""),
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                },
            )
            return response
        finally:
            request_id.reset(token)
