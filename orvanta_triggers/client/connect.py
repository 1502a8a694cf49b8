"""Opening a trigger's WebSocket: resolving a runnable URL (on a worker), the SSRF
check on the address actually connected to, the upgrade with headers and
subprotocols, and the classification of failures. Shared by the listener's
connections and the API's test-connection endpoint."""

import socket
import ssl
from urllib.parse import urlsplit

import websocket

from orvanta_triggers import conf, netguard
from orvanta_triggers.client import proxy
from orvanta_triggers.client.boundedsocket import BoundedSocket
from orvanta_triggers.client.runnable_calls import RunnableFailed
from orvanta_triggers.triggerfields import ws_url_error

# Statuses on the upgrade that say "later", not "never".
RETRYABLE_CLIENT_STATUSES = {408, 429}

# A peer that hasn't taken a frame of ours in this long is treated as gone: sends of
# every connection share a few threads, which must not wait on one dead peer.
SEND_TIMEOUT_SECS = 2.0


class ConnectFailed(Exception):
    """A connection attempt failed; `permanent` ones are retried at the backoff cap."""

    def __init__(self, reason, *, permanent=False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def url_runnable(url):
    """(path, is_flow) when `url` names a runnable that computes the URL, else None."""
    for prefix, is_flow in (("$script:", False), ("$flow:", True)):
        if url.startswith(prefix):
            return url[len(prefix) :], is_flow
    return None


def resolve_url(url, *, url_runnable_args, workspace_id, runnables, cancelled, kind, trigger_path=""):
    """The ws(s) URL to connect to: `url` itself, or what its runnable returns (run
    as a job of `kind`, for the trigger at `trigger_path`)."""
    runnable = url_runnable(url)
    if runnable is None:
        return url
    path, is_flow = runnable
    try:
        resolved = runnables.call(
            workspace_id=workspace_id,
            path=path,
            is_flow=is_flow,
            args=url_runnable_args,
            cancelled=cancelled,
            kind=kind,
            trigger_path=trigger_path,
        )
    except RunnableFailed as exc:
        raise ConnectFailed(f"URL runnable {exc}") from exc
    except Exception as exc:
        raise ConnectFailed(f"URL runnable {path} could not be run: {exc}") from exc
    if not isinstance(resolved, str):
        raise ConnectFailed(
            f"URL runnable {path} did not return a string (it returned {type(resolved).__name__})", permanent=True
        )
    problem = ws_url_error(resolved)
    if problem:
        raise ConnectFailed(f"URL runnable {path} returned an unusable URL: {problem}", permanent=True)
    return resolved


def _connect_direct(host, port, shown, timeout):
    """A TCP socket to host:port on an address vetted by the SSRF guard: the address
    checked is the address connected to, so a DNS answer that changes between check
    and connect (rebinding) gains nothing."""
    try:
        addresses = netguard.resolve(host, port)
    except OSError as exc:
        raise ConnectFailed(f"{shown}: host does not resolve ({exc.strerror or exc})") from exc
    if not conf.allow_private_urls():
        reason = netguard.forbidden_addresses_reason(host, addresses)
        if reason:
            raise ConnectFailed(f"{shown}: {reason}", permanent=True)
    errors = []
    for address in addresses:
        try:
            sock = socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            errors.append(f"{address}: {exc.__class__.__name__}: {exc.strerror or exc}")
            continue
        # Without it, Nagle holds a small result frame until the server's next
        # frame acknowledges the last one (a result came back a frame period late).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise ConnectFailed(f"{shown}: {'; '.join(errors)}")


def _open_socket(url, shown, timeout):
    """The BoundedSocket for the URL: TCP to its host, or a CONNECT tunnel through
    the proxy HTTPS_PROXY/HTTP_PROXY/NO_PROXY name (the SSRF guard applies as far as
    it sees behind a proxy: orvanta_triggers/client/proxy.py), then TLS end to end for wss."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        sock = proxy.open_tunnel(parts.scheme, host, port, timeout=timeout)
    except proxy.ProxyFailed as exc:
        raise ConnectFailed(f"{shown}: {exc.reason}", permanent=exc.permanent) from exc
    if sock is None:
        sock = _connect_direct(host, port, shown, timeout)
    try:
        return BoundedSocket(
            sock,
            max_message_bytes=conf.max_message_bytes(),
            send_timeout=SEND_TIMEOUT_SECS,
            tls_hostname=host if parts.scheme == "wss" else None,
        )
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        raise ConnectFailed(f"{shown}: TLS failed: {exc}") from exc


def open_websocket(url, *, headers, subprotocols):
    """A connected websocket-client WebSocket (its socket a BoundedSocket, reads
    blocking), or ConnectFailed saying why not (secrets in the URL redacted)."""
    shown = netguard.redact_url(url)
    timeout = conf.connect_timeout_secs()
    sock = _open_socket(url, shown, timeout)
    # Text is decoded (and so validated) by the connection in C; websocket-client's
    # own check walks every byte in Python.
    ws = websocket.WebSocket(skip_utf8_validation=True)
    try:
        ws.connect(
            url,
            socket=sock,
            timeout=timeout,
            header=headers,
            subprotocols=subprotocols or None,
            suppress_origin=True,
            # Following a redirect would connect to an address the SSRF guard never saw.
            redirect_limit=0,
        )
    except websocket.WebSocketBadStatusException as exc:
        sock.close()
        code = exc.status_code
        permanent = 400 <= code < 500 and code not in RETRYABLE_CLIENT_STATUSES
        raise ConnectFailed(f"{shown}: the server refused the upgrade with HTTP {code}", permanent=permanent) from exc
    except (websocket.WebSocketTimeoutException, socket.timeout) as exc:
        sock.close()
        raise ConnectFailed(f"{shown}: no answer within {timeout:g}s") from exc
    except (OSError, websocket.WebSocketException, ValueError) as exc:
        sock.close()
        raise ConnectFailed(f"{shown}: {exc.__class__.__name__}: {exc}") from exc
    sock.start_framing()
    sock.settimeout(None)
    return ws
