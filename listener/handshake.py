"""Opening a trigger's WebSocket: resolving a runnable URL (on a worker), the SSRF
check on the address actually connected to, the upgrade with headers and
subprotocols, and the classification of failures. Shared by the listener's
connections and the API's test-connection endpoint."""

import socket
import ssl
from urllib.parse import urlsplit

import websocket
from websocket import ABNF
from websocket._abnf import frame_buffer

from listener import proxy
from listener.runnables import RunnableFailed
from orvanta_triggers import conf, netguard
from orvanta_triggers.validation import ws_url_error

# Statuses on the upgrade that say "later", not "never".
RETRYABLE_CLIENT_STATUSES = {408, 429}


class ConnectFailed(Exception):
    """A connection attempt failed; `permanent` ones are retried at the backoff cap."""

    def __init__(self, reason, *, permanent=False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class BoundedFrameBuffer(frame_buffer):
    """websocket-client's frame reader, refusing a frame by its announced length:
    its payload is read and thrown away in small chunks (never held in memory), and
    an empty frame marked `oversized` (its announced length) stands in for it, so the
    connection stays up. Resumable across socket timeouts, like the original."""

    def __init__(self, recv_fn, skip_utf8_validation, *, max_bytes):
        super().__init__(recv_fn, skip_utf8_validation)
        self.max_bytes = max_bytes
        self._discard_left = 0
        self._discarded = None

    def recv_frame(self):
        if self._discarded is None:
            if self.needs_header():
                self.recv_header()
            if self.needs_length():
                self.recv_length()
            if self.length <= self.max_bytes:
                return super().recv_frame()
            if self.needs_mask():
                self.recv_mask()
            fin, _, _, _, opcode, _, _ = self.header
            self._discarded = ABNF(fin, 0, 0, 0, opcode, 0, b"")
            self._discarded.oversized = self.length
            self._discard_left = self.length - sum(len(b) for b in self.recv_buffer)
            self.recv_buffer = []
        while self._discard_left > 0:
            self._discard_left -= len(self.recv(min(self._discard_left, 65536)))
        frame, self._discarded = self._discarded, None
        self.clear()
        return frame


class BufferedRecv:
    """websocket-client asks the socket for each frame header (2 bytes), then its
    length, then its payload: three system calls per frame. This reads what the
    socket has, up to 64 KiB at a time, and hands it out from memory."""

    CHUNK = 65536

    def __init__(self, recv_fn):
        self._recv = recv_fn
        self._buffer = b""

    def __call__(self, bufsize):
        if not self._buffer:
            self._buffer = self._recv(self.CHUNK)
        data, self._buffer = self._buffer[:bufsize], self._buffer[bufsize:]
        return data


def url_runnable(url):
    """(path, is_flow) when `url` names a runnable that computes the URL, else None."""
    for prefix, is_flow in (("$script:", False), ("$flow:", True)):
        if url.startswith(prefix):
            return url[len(prefix) :], is_flow
    return None


def resolve_url(url, *, url_runnable_args, workspace_id, runnables, cancelled):
    """The ws(s) URL to connect to: `url` itself, or what its runnable returns."""
    runnable = url_runnable(url)
    if runnable is None:
        return url
    path, is_flow = runnable
    try:
        resolved = runnables.call(
            workspace_id=workspace_id, path=path, is_flow=is_flow, args=url_runnable_args, cancelled=cancelled
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


def _open_socket(url, shown, timeout):
    """A TCP (and TLS, for wss) socket to the URL's host, on an address vetted by the
    SSRF guard: the address checked is the address connected to, so a DNS answer
    that changes between check and connect (rebinding) gains nothing."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "wss" else 80)
    # Through a proxy when HTTPS_PROXY/HTTP_PROXY/NO_PROXY say so: a CONNECT tunnel,
    # TLS inside it, and the SSRF guard as far as it sees behind a proxy (listener/proxy.py).
    try:
        tunnel = proxy.open_tunnel(parts.scheme, host, port, timeout=timeout)
    except proxy.ProxyFailed as exc:
        raise ConnectFailed(f"{shown}: {exc.reason}", permanent=exc.permanent) from exc
    if tunnel is not None:
        return tunnel
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
            # websocket-client sets this only on sockets it opens itself: without it,
            # Nagle holds a small result frame until the server's next frame acknowledges
            # the last one (a result came back one frame period late).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            break
        except OSError as exc:
            errors.append(f"{address}: {exc.__class__.__name__}: {exc.strerror or exc}")
    else:
        raise ConnectFailed(f"{shown}: {'; '.join(errors)}")
    if parts.scheme == "wss":
        try:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise ConnectFailed(f"{shown}: TLS failed: {exc}") from exc
    sock.settimeout(timeout)
    return sock


def open_websocket(url, *, headers, subprotocols):
    """A connected websocket-client WebSocket, or ConnectFailed saying why not
    (secrets in the URL redacted)."""
    shown = netguard.redact_url(url)
    timeout = conf.connect_timeout_secs()
    sock = _open_socket(url, shown, timeout)
    # Text is decoded (and so validated) by the connection in C; websocket-client's
    # own check walks every byte in Python.
    ws = websocket.WebSocket(skip_utf8_validation=True)
    ws.frame_buffer = BoundedFrameBuffer(BufferedRecv(ws._recv), True, max_bytes=conf.max_message_bytes())
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
    return ws
