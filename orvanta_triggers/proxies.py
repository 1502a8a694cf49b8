"""Outbound HTTP proxy rules for trigger connections: which proxy a ws/wss URL goes
through (HTTP_PROXY, HTTPS_PROXY and NO_PROXY, read by config/settings.py), and what
the SSRF guard can check of a target that the proxy, not this process, connects to.
Shared by validation (at save) and the listener's tunnel (orvanta_triggers/client/proxy.py)."""

import base64
import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from orvanta_triggers import conf, netguard

logger = logging.getLogger(__name__)

# Refusals of the tunnel that a retry soon may change; the other 4xx (403 by policy,
# 407 for credentials) are permanent, as for the upgrade (client/connect.py).
RETRYABLE_CLIENT_STATUSES = {408, 429}


class ProxyFailed(Exception):
    """The tunnel could not be opened; `permanent` as for client.connect.ConnectFailed."""

    def __init__(self, reason, *, permanent=False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    # "Basic …" from the URL's userinfo, or None.
    authorization: str | None
    # The URL with its password redacted: the only form in messages and logs.
    shown: str


def _setting(scheme, host, port):
    """(variable name, proxy URL) for a connection to host:port, or None when no proxy
    is configured for the scheme or NO_PROXY exempts the target."""
    variable, value = ("HTTPS_PROXY", conf.https_proxy()) if scheme == "wss" else ("HTTP_PROXY", conf.http_proxy())
    if not value.strip() or bypasses(conf.no_proxy(), host, port):
        return None
    return variable, value.strip()


def proxy_for(scheme, host, port):
    """The Proxy a ws (`scheme` "ws") or wss connection to host:port goes through, or None."""
    setting = _setting(scheme, host, port)
    return None if setting is None else parse_proxy_url(*setting)


def parse_proxy_url(variable, value):
    """The Proxy that URL `value` (from `variable`) names; ProxyFailed if it names none."""
    # curl and requests take a bare host:port for an http:// proxy.
    url = value if "://" in value else f"http://{value}"
    shown = netguard.redact_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError as exc:
        raise ProxyFailed(f"{variable} is not a valid proxy URL ({shown}: {exc})", permanent=True) from exc
    if parts.scheme.lower() != "http":
        raise ProxyFailed(
            f"{variable} {shown}: only http:// proxies are supported, not {parts.scheme}://", permanent=True
        )
    if not parts.hostname:
        raise ProxyFailed(f"{variable} {shown} names no host", permanent=True)
    authorization = None
    if parts.username or parts.password:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return Proxy(host=parts.hostname, port=port, authorization=authorization, shown=shown)


def bypasses(no_proxy, host, port):
    """Whether NO_PROXY exempts host:port. Entries, separated by commas or spaces, case
    insensitive: `*` (everything); a name, matching itself and its subdomains (a leading
    `.` or `*.` changes nothing); an IP address or CIDR range, matching IP-literal
    hosts in it (names are not resolved for this, as with curl); any of them with an
    optional `:port` (`[v6]:port` for IPv6) to match that port only."""
    host = host.lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in no_proxy.replace(",", " ").lower().split():
        if entry == "*":
            return True
        name, entry_port = _split_port(entry)
        if entry_port is not None and entry_port != port:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(name, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = name.removeprefix("*").removeprefix(".").rstrip(".")
        if name and (host == name or host.endswith(f".{name}")):
            return True
    return False


def _split_port(entry):
    """(host, port or None) of a NO_PROXY entry; a bare IPv6 address has no port."""
    if entry.startswith("["):
        address, _, rest = entry[1:].partition("]")
        return address, int(rest[1:]) if rest[:1] == ":" and rest[1:].isdigit() else None
    name, colon, port = entry.rpartition(":")
    if colon and ":" not in name and port.isdigit():
        return name, int(port)
    return entry, None


def forbidden_target_reason(scheme, host, port):
    """Why the SSRF guard refuses a ws/wss connection to host:port with private URLs
    disallowed, or None: the direct rule (netguard), or the proxied one when a proxy
    applies."""
    if _setting(scheme, host, port) is None:
        return netguard.forbidden_target_reason(host, port)
    return proxied_target_reason(host, port)


def proxied_target_reason(host, port):
    """Why the SSRF guard refuses a target that a proxy connects to, or None. The proxy
    resolves the name itself; the guard sees IP literals, loopback names and what the
    name resolves to here. A name that does not resolve here (the usual case where only
    the proxy reaches the Internet) is the proxy's to resolve, unseen by the guard."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        # Never left to the resolver: a scoped IPv6 literal it can't use would pass unseen.
        return netguard.forbidden_addresses_reason(host, [host])
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        # RFC 6761: the proxy's resolver may answer for *.localhost where this one doesn't.
        return f"host '{host}' is a loopback name; set ORVANTA_ALLOW_PRIVATE_URLS=true to allow it"
    try:
        addresses = netguard.resolve(host, port)
    except OSError:
        logger.debug("host %s does not resolve here: the proxy resolves it, unseen by the SSRF guard", host)
        return None
    return netguard.forbidden_addresses_reason(host, addresses)
