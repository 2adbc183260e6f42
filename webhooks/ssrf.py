"""The SSRF guard for merchant-supplied URLs (webhook endpoints): which addresses Paydesk
connects to, decided on the very addresses it then connects to.

Checking a name and letting the HTTP client resolve it again afterwards is open to DNS
rebinding: a name with a short TTL answers a public address to the check and 127.0.0.1
(or 169.254.169.254, the cloud metadata service) to the connect. So a name is resolved
once, here, every address it resolves to is checked, and the socket is connected to one
of those checked addresses (webhooks.http). The request keeps the URL's hostname, so the
Host header, TLS SNI and certificate verification are the name's, as without the guard.

A name that does not resolve is not refused: it is a failed attempt at delivery
(retried on the schedule, since DNS may be late or down), so registration accepts it too.
"""

import ipaddress
import socket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(Exception):
    """The URL's host is, or resolves to, an address that is not public."""


# Named so that a refusal says what the address is; anything else not globally
# routable falls through to is_private / is_reserved / "not globally routable".
_NAMED_NETWORKS = [
    (ipaddress.ip_network("100.64.0.0/10"), "a shared (carrier-grade NAT) address"),
    (ipaddress.ip_network("192.0.2.0/24"), "a documentation address"),
    (ipaddress.ip_network("198.51.100.0/24"), "a documentation address"),
    (ipaddress.ip_network("203.0.113.0/24"), "a documentation address"),
    (ipaddress.ip_network("2001:db8::/32"), "a documentation address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking address"),
]


def address_kind(address: Address) -> str | None:
    """None for a globally routable unicast address; otherwise what it is ("a loopback
    address", ...): private, loopback, link-local, shared (CGNAT 100.64.0.0/10),
    documentation, benchmarking, reserved, multicast and unspecified addresses are all
    refused. An IPv4-mapped IPv6 address is judged by its IPv4 address."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    for test, kind in (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
    ):
        if test:
            return kind
    for network, kind in _NAMED_NETWORKS:
        if address.version == network.version and address in network:
            return kind
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def resolve(host: str, port: int | None, *, allow_private: bool) -> list[tuple]:
    """Resolve `host` once (TCP) and check every address it resolves to: one that is not
    public refuses the host, whatever the others are (unless `allow_private`, for
    development). Returns getaddrinfo's entries, to connect to exactly those.

    Raises socket.gaierror if the name does not resolve, RefusedAddress (saying which
    address, and what it is) if an address is not public."""
    host = host.strip("[]")
    entries = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    if not allow_private:
        for *_, sockaddr in entries:
            text = sockaddr[0].split("%")[0]  # an IPv6 zone (fe80::1%eth0) is not part of the address
            kind = address_kind(ipaddress.ip_address(text))
            if kind is not None:
                subject = f"{text} is" if _is_literal(host) else f"{host} resolves to {text},"
                raise RefusedAddress(f"{subject} {kind}: webhooks are only sent to public addresses.")
    return entries


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True
