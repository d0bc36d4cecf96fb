"""Request ids: taken from nginx, returned to the client, in every log line."""
import json
import logging

import pytest

from config.logging import JsonFormatter, RequestIdFilter, request_id


def test_valid_request_id_is_kept_and_returned(client, caplog):
    with caplog.at_level(logging.INFO, logger="api.access"):
        response = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123.x_y")
    assert response["X-Request-ID"] == "abc-123.x_y"
    (record,) = [r for r in caplog.records if r.name == "api.access"]
    assert record.status == 200 and record.path == "/healthz"


@pytest.mark.parametrize("sent", ["", "has spaces", "x" * 200, "quote\"d"])
def test_missing_or_unsafe_request_id_is_replaced(client, sent):
    headers = {"HTTP_X_REQUEST_ID": sent} if sent else {}
    response = client.get("/healthz", **headers)
    returned = response["X-Request-ID"]
    assert returned != sent
    assert len(returned) == 32 and returned.isalnum()


def test_json_lines_carry_the_request_id():
    token = request_id.set("rid-42")
    try:
        record = logging.LogRecord("api.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
        record.status = 200
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["request_id"] == "rid-42"
    assert line["message"] == "GET /x"
    assert line["status"] == 200
    assert line["level"] == "INFO"
