"""API keys, and the per-caller limits that come with them.

Keys are configured only as SHA-256 digests (`API_KEYS=name:hexdigest,...`), so the
configuration never contains a usable key. A request's key is hashed and compared with
every configured digest in constant time. The key's name owns the jobs it creates and
its limits, so rotating a key (a new key under the same name) orphans nothing.

With no key configured the API runs open: anyone who reaches it may use it, and the
limits apply per client address.
"""

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from loguru import logger

from api.services import Services, get_services
from core.errors import Unauthorized


@dataclass(frozen=True)
class Caller:
    """The identity a request acts for: a key's name, or a client address when open."""

    name: str
    authenticated: bool

    @property
    def owner(self) -> str:
        """The owner recorded on jobs: the key name, or empty in open mode."""
        return self.name if self.authenticated else ""


def find_key_name(keys: dict[str, bytes], presented: str) -> str | None:
    """Return the name whose digest matches `presented`, comparing with every entry."""
    digest = hashlib.sha256(presented.encode()).digest()
    found = None
    for name, expected in keys.items():
        if hmac.compare_digest(digest, expected):
            found = name
    return found


def presented_key(request: Request) -> str | None:
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key") or None


async def authorize(
    request: Request, services: Annotated[Services, Depends(get_services)]
) -> Caller:
    """Identify the caller of an /api/v1/ocr route and count the request."""
    keys = services.api_keys
    if keys:
        presented = presented_key(request)
        name = find_key_name(keys, presented) if presented else None
        if name is None:
            logger.info("request without a valid API key", path=request.url.path)
            raise Unauthorized()
        caller = Caller(name=name, authenticated=True)
    else:
        caller = Caller(name=f"ip:{_client_address(request)}", authenticated=False)
    request.state.caller = caller.name
    await services.limits.count_request(caller)
    return caller


CallerDep = Annotated[Caller, Depends(authorize)]


def _client_address(request: Request) -> str:
    """Return the client's IP address, or `unknown` when it is not an address.

    Behind a proxy, Uvicorn takes the address from X-Forwarded-For, which the
    client writes; anything that is not an IP address must not become an identity.
    """
    host = request.client.host if request.client else ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return "unknown"
