"""Outbound HTTP proxies for trigger connections (the listener's and test connection's):
which proxy a ws/wss URL goes through (HTTP_PROXY, HTTPS_PROXY and NO_PROXY, read by
config/settings.py), the CONNECT tunnel through it with TLS end to end inside, and
what the SSRF guard can check of a target that the proxy, not this process, connects to.
"""

import base64
import ipaddress
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from orvanta_triggers import conf, netguard

logger = logging.getLogger(__name__)

# Refusals of the tunnel that a retry soon may change; the other 4xx (403 by policy,
# 407 for credentials) are permanent, as for the upgrade (handshake.py).
RETRYABLE_CLIENT_STATUSES = {408, 429}
# A proxy's answer to CONNECT is a status line and a few headers.
MAX_RESPONSE_HEAD = 16384
STATUS_LINE_RE = re.compile(r"HTTP/\d\.\d (\d{3})(?: (.*))?")


class ProxyFailed(Exception):
    """The tunnel could not be opened; `permanent` as for handshake.ConnectFailed."""

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


def open_tunnel(scheme, host, port, *, timeout):
    """A socket to host:port through the proxy that applies to a `scheme` connection
    there (TLS end to end inside the tunnel for wss, checked against `host`), or None
    when none applies. ProxyFailed says why not, the proxy's password redacted."""
    proxy = proxy_for(scheme, host, port)
    if proxy is None:
        return None
    if not conf.allow_private_urls():
        # The proxy's own address is the operator's configuration, allowed even if private.
        reason = proxied_target_reason(host, port)
        if reason:
            raise ProxyFailed(reason, permanent=True)
    logger.debug("tunnel to %s:%s through proxy %s", host, port, proxy.shown)
    sock = _connect(proxy, host, port, timeout)
    if scheme == "wss":
        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ProxyFailed(f"TLS failed (through proxy {proxy.shown}): {exc}") from exc
    sock.settimeout(timeout)
    return sock


def _connect(proxy, host, port, timeout):
    """A TCP socket to the proxy with its CONNECT tunnel to host:port established, all
    within `timeout`."""
    deadline = time.monotonic() + timeout
    try:
        authority = _authority(host, port)
    except UnicodeError as exc:
        raise ProxyFailed(f"host '{host}' can't be named to a proxy ({exc})", permanent=True) from exc
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    except TimeoutError as exc:
        raise ProxyFailed(f"proxy {proxy.shown} did not answer within {timeout:g}s") from exc
    except OSError as exc:
        raise ProxyFailed(
            f"proxy {proxy.shown} is unreachable ({exc.__class__.__name__}: {exc.strerror or exc})"
        ) from exc
    # As on a direct socket (handshake.py): without it, Nagle holds small frames back.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        request = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
        if proxy.authorization:
            request.append(f"Proxy-Authorization: {proxy.authorization}")
        sock.sendall(("\r\n".join(request) + "\r\n\r\n").encode("ascii"))
        head = _read_head(sock, deadline, proxy)
    except TimeoutError as exc:
        sock.close()
        raise ProxyFailed(f"proxy {proxy.shown} did not answer the CONNECT within {timeout:g}s") from exc
    except OSError as exc:
        sock.close()
        raise ProxyFailed(
            f"proxy {proxy.shown} failed during the CONNECT ({exc.__class__.__name__}: {exc.strerror or exc})"
        ) from exc
    except ProxyFailed:
        sock.close()
        raise
    match = STATUS_LINE_RE.fullmatch(head.split(b"\r\n", 1)[0].decode("latin-1"))
    if not match:
        sock.close()
        raise ProxyFailed(f"proxy {proxy.shown} answered the CONNECT with something other than HTTP")
    code = int(match[1])
    if 200 <= code < 300:
        return sock
    sock.close()
    # The reason phrase is the proxy's text, shown to users: printable and short.
    phrase = "".join(c for c in match[2] or "" if c.isprintable())[:100]
    hint = ""
    if code == 407 and not proxy.authorization:
        hint = "; give credentials in the proxy URL (http://user:password@host:port)"
    raise ProxyFailed(
        f"proxy {proxy.shown} refused CONNECT to {authority} with HTTP {code} {phrase}".rstrip() + hint,
        permanent=400 <= code < 500 and code not in RETRYABLE_CLIENT_STATUSES,
    )


def _authority(host, port):
    """host:port as a CONNECT request names it: IDNA for names, brackets for IPv6."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host.encode('idna').decode('ascii')}:{port}"


def _read_head(sock, deadline, proxy):
    """The proxy's response head, read one byte at a time: what follows it belongs to
    the tunnel, and a socket can't be un-read."""
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        if len(head) >= MAX_RESPONSE_HEAD:
            raise ProxyFailed(f"proxy {proxy.shown} answered the CONNECT with a head over {MAX_RESPONSE_HEAD} bytes")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        byte = sock.recv(1)
        if not byte:
            raise ProxyFailed(f"proxy {proxy.shown} closed the connection without answering the CONNECT")
        head += byte
    return bytes(head)
