"""The CONNECT tunnel through an outbound HTTP proxy for the listener's and test
connection's sockets; which proxy applies, and the SSRF rules behind it, are in
orvanta_triggers/proxies.py."""

import logging
import re
import socket
import time

from orvanta_triggers import conf
from orvanta_triggers.proxies import RETRYABLE_CLIENT_STATUSES, ProxyFailed, proxied_target_reason, proxy_for

logger = logging.getLogger(__name__)

# A proxy's answer to CONNECT is a status line and a few headers.
MAX_RESPONSE_HEAD = 16384
STATUS_LINE_RE = re.compile(r"HTTP/\d\.\d (\d{3})(?: (.*))?")


def open_tunnel(scheme, host, port, *, timeout):
    """A TCP socket tunnelled to host:port through the proxy that applies to a
    `scheme` connection there (the caller runs TLS inside it for wss), or None when
    none applies. ProxyFailed says why not, the proxy's password redacted."""
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
    # As on a direct socket (connect.py): without it, Nagle holds small frames back.
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
