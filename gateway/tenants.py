"""Who is calling: the tenant (a hard partition of the cache) and the upstream key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_dir

from gateway.errors import InvalidRequest, Unauthorized
from gateway.settings import TenantSettings

logger = logging.getLogger(__name__)
ANONYMOUS = "anonymous"
_NAMESPACE = re.compile(r"^[A-Za-z0-9._\-/]{1,64}$")


@dataclass(frozen=True)
class Caller:
    tenant: str
    namespace: str
    key: str | None  # the caller's own key, used upstream only when configured to


def load_salt(settings: TenantSettings, env: dict[str, str] | None = None) -> bytes:
    """The salt of tenant hashes: from the configured variable, else a file made once."""
    value = (env if env is not None else os.environ).get(settings.salt_env)
    if value:
        return value.encode()
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


class Tenancy:
    def __init__(self, settings: TenantSettings, salt: bytes) -> None:
        self._settings = settings
        self._salt = salt

    def tenant_of(self, key: str) -> str:
        return hmac.new(self._salt, key.encode(), hashlib.sha256).hexdigest()[:32]

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
        if key is None:
            return Caller(ANONYMOUS, namespace, None)
        digest = hashlib.sha256(key.encode()).hexdigest()
        for virtual in self._settings.virtual_keys:
            if hmac.compare_digest(virtual.key_sha256.lower(), digest):
                joined = "/".join(p for p in (virtual.namespace, namespace) if p)
                return Caller(virtual.tenant, joined, key)
        return Caller(self.tenant_of(key), namespace, key)
