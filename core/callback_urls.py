"""The address check of callback URLs, which keeps webhooks off internal networks.

A callback URL comes from the client, and the workers POST to it from inside the
deployment, so without a check a client could make pindai reach loopback services,
the private network or a cloud metadata endpoint (server-side request forgery). Every
address the host resolves to must be public, unless it is inside a network listed in
WEBHOOK_ALLOWED_NETWORKS. The check runs at submit, and again at each delivery on the
addresses that the delivery then connects to, so a DNS answer that changes after
submit cannot redirect a delivery.
"""

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from core.errors import CallbackUrlRefused, InvalidRequest

MAX_CALLBACK_URL_LENGTH = 2048
_PRINTABLE_URL = re.compile(r"[\x21-\x7e]+")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CallbackTarget:
    """A parsed callback URL: where to connect and what to send as Host."""

    url: SplitResult
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default_port = 443 if self.url.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default_port else f"{host}:{self.port}"


def parse_allowed_networks(value: str) -> list[IPNetwork]:
    """Parse WEBHOOK_ALLOWED_NETWORKS; raise ValueError naming a bad entry."""
    networks = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as error:
            raise ValueError(f"WEBHOOK_ALLOWED_NETWORKS: {entry!r}: {error}") from error
    return networks


def parse_callback_url(url: str) -> CallbackTarget:
    """Check the form of a callback URL; raise InvalidRequest naming the problem."""
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        raise _invalid(f"longer than {MAX_CALLBACK_URL_LENGTH} characters")
    if not _PRINTABLE_URL.fullmatch(url):
        raise _invalid(
            "use printable ASCII only: percent-encode other characters and write "
            "international host names in their xn-- form"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise _invalid(str(error)) from error
    if parts.scheme not in ("http", "https"):
        raise _invalid("the scheme must be http or https")
    if not parts.hostname:
        raise _invalid("the URL has no host")
    if parts.username is not None or parts.password is not None:
        # Credentials would be stored with the job and shown in delivery records;
        # receivers authenticate deliveries by their signature instead.
        raise _invalid("the URL must not contain credentials")
    if parts.fragment:
        raise _invalid("the URL must not contain a fragment")
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    return CallbackTarget(url=parts, host=parts.hostname, port=port)


def blocked_reason(address: IPAddress, allowed: Iterable[IPNetwork]) -> str | None:
    """Return why `address` may not be reached, or None when it may."""
    if any(address in network for network in allowed):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo) reach that
        # IPv4 host, so the embedded address is what gets checked.
        for embedded in _embedded_ipv4(address):
            reason = blocked_reason(embedded, allowed)
            if reason is not None:
                return reason
        if address.is_site_local:
            return "a site-local address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata services live there)"
    if address.is_private:
        return "a private address"
    if address.is_multicast or address.is_unspecified or address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "a non-public address"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    embedded = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        embedded.extend(address.teredo)
    return [candidate for candidate in embedded if candidate is not None]


def check_addresses(
    target: CallbackTarget, addresses: list[IPAddress], allowed: list[IPNetwork]
) -> None:
    """Raise CallbackUrlRefused unless every address may be reached."""
    if not addresses:
        raise CallbackUrlRefused(f"The callback host {target.host!r} does not resolve.")
    for address in addresses:
        reason = blocked_reason(address, allowed)
        if reason is not None:
            raise CallbackUrlRefused(
                f"The callback host {target.host!r} resolves to {reason} ({address}); "
                "webhooks reach only public addresses unless WEBHOOK_ALLOWED_NETWORKS "
                "includes it."
            )


def addresses_from(infos: list[tuple]) -> list[IPAddress]:
    """Return the distinct addresses of a getaddrinfo result, in its order."""
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


def resolve(target: CallbackTarget) -> list[IPAddress]:
    """Resolve the target's host (blocking); an unknown host gives no address."""
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    return addresses_from(infos)


def _invalid(problem: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid request: callback_url: {problem}.")
