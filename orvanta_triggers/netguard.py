"""Which network targets a trigger may connect to (SSRF guard), and URL redaction."""

import ipaddress
import re
import socket
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "***"


# Every block the IANA special-purpose registries mark as not globally reachable.
# Python's is_global misses some of them in the versions we run on (3.11 takes
# 100.64.0.0/10 right but fec0::/10, 2002::/16 and 192.88.99.0/24 for global), so the
# rule names them itself rather than depend on the interpreter.
_NOT_GLOBAL_BLOCKS = (
    "0.0.0.0/8",  # "this network"
    "10.0.0.0/8",  # private
    "100.64.0.0/10",  # shared address space (carrier NAT; cloud metadata such as 100.100.100.200)
    "127.0.0.0/8",  # loopback
    "169.254.0.0/16",  # link-local (cloud metadata 169.254.169.254)
    "172.16.0.0/12",  # private
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",  # private
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, broadcast
    "::/128",  # unspecified
    "::1/128",  # loopback
    "::/96",  # IPv4-compatible (deprecated)
    "64:ff9b:1::/48",  # local-use NAT64
    "100::/64",  # discard-only
    "2001::/23",  # IETF protocol assignments (Teredo's 2001::/32 is judged by what it embeds)
    "2001:db8::/32",  # documentation
    "3fff::/20",  # documentation
    "5f00::/16",  # segment routing SIDs
    "fc00::/7",  # unique local
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated)
    "ff00::/8",  # multicast
)
# By IP version: an IPv4 address compared with an IPv6 network is compared as a number.
NOT_GLOBAL_NETWORKS = {
    version: tuple(n for n in map(ipaddress.ip_network, _NOT_GLOBAL_BLOCKS) if n.version == version)
    for version in (4, 6)
}
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip):
    """The IPv4 addresses an IPv6 address carries and reaches: IPv4-mapped, NAT64
    (64:ff9b::/96), 6to4 (2002::/16), Teredo (server and client); () for any other."""
    if ip.ipv4_mapped:
        return (ip.ipv4_mapped,)
    if ip in NAT64_WELL_KNOWN:
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    if ip.sixtofour:
        return (ip.sixtofour,)
    if ip.teredo:
        return ip.teredo
    return ()


def is_forbidden_address(address):
    """Anything but a globally routable unicast address: loopback, private, shared,
    link-local (cloud metadata included), documentation, multicast, reserved... An
    IPv6 address that embeds IPv4 addresses is judged by those."""
    ip = ipaddress.ip_address(address)
    if ip.version == 6:
        embedded = embedded_ipv4(ip)
        if embedded:
            return any(is_forbidden_address(v4) for v4 in embedded)
    return (
        not ip.is_global
        or ip.is_multicast
        or ip.is_reserved
        or any(ip in network for network in NOT_GLOBAL_NETWORKS[ip.version])
    )


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


_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def redact_text(text):
    """`text` with every URL in it redacted as redact_url does (query values,
    userinfo passwords). URLs with neither are left exactly as they are."""
    if not text:
        return text

    def replace(match):
        url = match.group(0)
        if "?" not in url and "@" not in url:
            return url
        return redact_url(url)

    return _URL_IN_TEXT.sub(replace, str(text))
