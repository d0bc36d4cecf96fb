"""JSON log lines that carry the request id, for the journal.

nginx sends every request with an X-Request-ID (the client's, or one it made
up); RequestIdMiddleware keeps it for the duration of the request, and every
log record made meanwhile carries it, so one request can be followed from
nginx's access log through Django's log lines.
"""
import contextvars
import json
import logging
from datetime import datetime, timezone

request_id = contextvars.ContextVar("request_id", default="-")

# Attributes every LogRecord has; anything else was passed with extra=.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
