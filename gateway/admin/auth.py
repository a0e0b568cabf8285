"""The admin token: kept as its SHA-256, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from starlette.requests import Request

from gateway.errors import Unauthorized
from gateway.settings import AdminSettings


class AdminAuth:
    """Holds the SHA-256 of the admin token (never the token) and checks bearer tokens in
    constant time. With no token configured, every admin request is refused."""

    def __init__(self, settings: AdminSettings, env: Mapping[str, str] = os.environ) -> None:
        token = env.get(settings.token_env, "")
        if token:
            self.digest: bytes | None = hashlib.sha256(token.encode()).digest()
        elif settings.token_sha256:
            self.digest = bytes.fromhex(settings.token_sha256)
        else:
            self.digest = None

    def valid(self, authorization: str | None) -> bool:
        if self.digest is None or not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        presented = hashlib.sha256(token.strip().encode()).digest()
        return hmac.compare_digest(presented, self.digest)

    def check(self, request: Request) -> None:
        if self.digest is None:
            raise Unauthorized(
                "the admin API is disabled: set GATEWAY_ADMIN_TOKEN (or admin.token_sha256)"
            )
        if not self.valid(request.headers.get("authorization")):
            raise Unauthorized("a valid admin token is required (Authorization: Bearer <token>)")
