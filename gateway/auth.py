"""Who is calling: the tenant (a hard partition of the cache) and the upstream key; and the
admin token, kept as its SHA-256 and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_dir
from starlette.requests import Request

from gateway.errors import InvalidRequest, Unauthorized
from gateway.settings import AdminSettings, TenantSettings

logger = logging.getLogger(__name__)
ANONYMOUS = "anonymous"
_NAMESPACE = re.compile(r"^[A-Za-z0-9._\-/]{1,64}$")


@dataclass(frozen=True)
class Caller:
    tenant: str
    namespace: str
    upstream_key: str | None  # the caller's own key, when configured to be used upstream
    route_header: bool = True  # may choose a route's member with `x-gateway-route`


def load_salt(
    settings: TenantSettings, env: dict[str, str] | None = None, *, shared_store: bool = False
) -> bytes:
    """The salt of tenant hashes: from the configured variable, else a file made once on
    this machine. With a store other gateways may share (`shared_store`: not SQLite), the
    variable is required: a salt per machine would give one key a tenant per replica."""
    value = (env if env is not None else os.environ).get(settings.salt_env)
    if value:
        return value.encode()
    if shared_store:
        raise SaltError(
            f"set {settings.salt_env}: with a shared database every gateway must hash keys "
            "with the same salt"
        )
    path = Path(user_data_dir("semantic-cache-gateway")) / "tenant.salt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
        logger.warning(
            "no %s set: created a tenant salt at %s (share it between replicas)",
            settings.salt_env,
            path,
        )
    return path.read_text().strip().encode()


class SaltError(RuntimeError):
    """No salt is configured where one must be shared."""


class Tenancy:
    def __init__(self, settings: TenantSettings, salt: bytes) -> None:
        self._settings = settings
        self._salt = salt

    def tenant_of(self, key: str) -> str:
        return hmac.new(self._salt, key.encode(), hashlib.sha256).hexdigest()[:32]

    def _upstream(self, key: str) -> str | None:
        return key if self._settings.pass_through_key else None

    def identify(self, authorization: str | None, namespace_header: str | None) -> Caller:
        key = None
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized("the Authorization header must be 'Bearer <key>'")
            key = token.strip()
        if key is None and self._settings.require_key:
            raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
        namespace = ""
        if namespace_header:
            if not _NAMESPACE.match(namespace_header):
                raise InvalidRequest(
                    "x-cache-namespace must be 1-64 characters of "
                    "letters, digits, '.', '_', '-' or '/'"
                )
            namespace = namespace_header
        allowed = self._settings.route_header
        if key is None:
            return Caller(ANONYMOUS, namespace, None, allowed)
        digest = hashlib.sha256(key.encode()).hexdigest()
        for virtual in self._settings.virtual_keys:
            if hmac.compare_digest(virtual.key_sha256.lower(), digest):
                joined = "/".join(p for p in (virtual.namespace, namespace) if p)
                if virtual.route_header is not None:
                    allowed = virtual.route_header
                return Caller(virtual.tenant, joined, self._upstream(key), allowed)
        return Caller(self.tenant_of(key), namespace, self._upstream(key), allowed)


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
