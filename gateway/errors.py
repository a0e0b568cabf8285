"""Errors a client can see, each rendered as OpenAI-shaped JSON.

    GatewayError                 500 server_error
    ├── InvalidRequest           400 invalid_request_error (malformed JSON, wrong types)
    ├── Unauthorized             401 authentication_error
    ├── PermissionDenied         403 permission_error (a header this key may not send)
    ├── ModelNotFound            404 invalid_request_error, code model_not_found
    ├── NotFound                 404 invalid_request_error, code not_found (admin objects)
    ├── RequestTimeout           408 invalid_request_error (the body did not arrive in time)
    ├── BodyTooLarge             413 invalid_request_error
    └── UpstreamError            the upstream's status (429 and 5xx kept), or 502
        └── UpstreamTimeout      504

Foreign exceptions (LiteLLM's, httpx's) are translated in `gateway.upstream` only. An error
is rendered once, by the app's exception handler (`gateway.http.responses.error_response`);
anything else that escapes a route is a logged 500 of the same shape.
"""

from __future__ import annotations


class GatewayError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"
    code = "permission_denied"


class ModelNotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class NotFound(GatewayError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class RequestTimeout(GatewayError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class BodyTooLarge(GatewayError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    type = "timeout"
    code = "upstream_timeout"
