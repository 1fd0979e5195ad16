"""The API's one error shape: ``{"error": {"code", "message", "field"}}``, for every status it answers."""

from __future__ import annotations

from flask import jsonify, make_response


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
):
    resp = make_response(jsonify(error={"code": code, "message": message, "field": field}), status)
    for name, value in (headers or {}).items():
        resp.headers[name] = value
    return resp


CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "server_error",
    502: "stripe_error",
    503: "unavailable",
}


def code_for(status: int) -> str:
    return CODES.get(status, "error")


def api_error_response(err: Exception):
    """An ``ApiError`` or a service's ``ServiceError`` in the one shape (a Stripe object that is not there: 404)."""
    if isinstance(err, ApiError):
        return error_response(err.status, err.code, err.message, err.field, err.headers)
    message = getattr(err, "message", str(err))
    if getattr(err, "not_found", False):
        return error_response(404, "not_found", message, getattr(err, "field", None))
    code = "stripe_error" if message.startswith("Stripe") else "invalid_request"
    return error_response(400, code, message, getattr(err, "field", None))
