"""Which network targets a trigger may connect to (SSRF guard), and URL redaction."""

import ipaddress
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"


def is_forbidden_address(address):
    """Loopback, private, link-local (cloud metadata included), multicast, reserved."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def resolve(host, port):
    """Every address `host` resolves to, as strings, in the resolver's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def forbidden_target_reason(host, port):
    """Why `host` may not be connected to with private URLs disallowed, or None."""
    try:
        addresses = resolve(host, port)
    except OSError as exc:
        return f"host '{host}' does not resolve ({exc.strerror or exc})"
    return forbidden_addresses_reason(host, addresses)


def forbidden_addresses_reason(host, addresses):
    """Why connecting to any of `addresses` (what `host` resolved to) is refused, or None."""
    forbidden = [a for a in addresses if is_forbidden_address(a)]
    if forbidden:
        return (
            f"host '{host}' resolves to a private or internal address ({', '.join(forbidden)}); "
            "set ORVANTA_ALLOW_PRIVATE_URLS=true to allow it"
        )
    return None


def redact_url(url):
    """The URL with every query-string value and any userinfo password replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else f"{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(key, REDACTED) for key, _ in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
