"""One trigger's WebSocket connection, on its own thread: resolve the URL, connect,
send the initial messages, then receive frames (turning matching ones into jobs),
send heartbeats and protocol pings, and reconnect with backoff until closed.

Results are sent from the result router's thread; websocket-client serialises
sends with its own lock, and this thread is the only reader of the socket.
"""

import base64
import json
import logging
import struct
import threading
import time
from dataclasses import dataclass

import websocket
from django.utils import timezone
from websocket import ABNF

from listener import metrics
from listener.backoff import Backoff
from listener.handshake import ConnectFailed, open_websocket, resolve_url
from listener.runnables import RunnableFailed
from orvanta_triggers import conf, filters, monitor, netguard
from orvanta_triggers.execution import result_frame
from orvanta_triggers.models import WebSocketTrigger
from orvanta_triggers.tasks import NOTIFY_CONNECTION_FAILURE

logger = logging.getLogger(__name__)

Status = WebSocketTrigger.Status


@dataclass(frozen=True)
class ListenerServices:
    """What every connection of a listener shares."""

    listener_id: str
    celery_app: object
    dispatcher: object
    status: object
    runnables: object
    monitor: object


RESULTS_SUBSCRIBE_TIMEOUT_SECS = 5.0


def send_frame(ws, frame):
    """Send a text frame (str) or a binary frame (bytes)."""
    if isinstance(frame, bytes):
        ws.send_binary(frame)
    else:
        ws.send(frame)


class FailureStreak:
    """Connection attempts failing in a row; once they have lasted `after_secs`, the
    trigger's error handler hears of it, once per streak."""

    def __init__(self, connection, *, after_secs):
        self._connection = connection
        self._after_secs = after_secs
        self._since = None
        self._since_wall = None
        self._notified = False

    def failed(self, reason):
        if self._since is None:
            self._since, self._since_wall = time.monotonic(), timezone.now()
        if not self._notified and time.monotonic() - self._since >= self._after_secs:
            self._notified = self._connection.notify_failure(reason, self._since_wall)

    def reset(self):
        self._since = None
        self._notified = False


class Connection:
    def __init__(self, spec, services, *, results_subscribed):
        self.spec = spec
        self._services = services
        self._results_subscribed = results_subscribed
        self._closing = threading.Event()
        self._ws = None
        self._url = None
        self._thread = threading.Thread(target=self._run, name=f"ws:{spec.path}", daemon=True)
        self._heartbeat_state = None
        self._next_heartbeat = None
        self._skipping_message = False
        # Per-frame settings, read once per connection rather than per frame.
        self._max_message_bytes = conf.max_message_bytes()
        self._state_field = (spec.heartbeat or {}).get("state_field")
        binary_heartbeat = (spec.heartbeat or {}).get("binary_message")
        self._heartbeat_bytes = base64.b64decode(binary_heartbeat) if binary_heartbeat else None
        self._close_reason = "closed by the listener"
        self.status = Status.CONNECTING

    # Lifecycle, called by the supervisor

    def start(self):
        self._thread.start()

    def close(self, reason="closed by the listener"):
        """Ask the connection to end: a close frame now, the thread ends when the
        server answers it (join() forces the socket shut after a deadline)."""
        self._close_reason = reason
        self._closing.set()
        ws = self._ws
        if ws is not None and ws.connected:
            try:
                ws.send_close(websocket.STATUS_NORMAL, b"")
            except Exception:
                ws.abort()

    def ended_unasked(self):
        """Whether the thread has ended although nobody asked it to close."""
        return self._thread.ident is not None and not self._thread.is_alive() and not self._closing.is_set()

    def join(self, timeout):
        self._thread.join(timeout)
        if self._thread.is_alive():
            ws = self._ws
            if ws is not None:
                ws.abort()
            self._thread.join(1.0)

    def send_result(self, frame, job_id):
        """Send a job's result on the live socket; False when there is none."""
        ws = self._ws
        if ws is None or not ws.connected or self._closing.is_set():
            return False
        try:
            send_frame(ws, frame)
        except Exception as exc:
            logger.warning("trigger %s: could not send result of job %s: %s", self.spec.path, job_id, exc)
            return False
        logger.debug("trigger %s: sent result of job %s", self.spec.path, job_id)
        self._services.monitor.event(
            self.spec.workspace_slug,
            {
                "type": "result",
                "trigger_path": self.spec.path,
                "job_id": job_id,
                "frame": monitor.shorten(frame if isinstance(frame, str) else base64.b64encode(frame).decode("ascii")),
            },
        )
        return True

    def notify_failure(self, reason, since):
        """Ask a worker to run the error handler about a lasting connection failure."""
        try:
            self._services.celery_app.send_task(
                NOTIFY_CONNECTION_FAILURE,
                kwargs={
                    "spec": self.spec.job_spec,
                    "reason": reason,
                    "started_at": since.isoformat(),
                    "failed_at": timezone.now().isoformat(),
                },
                retry=False,
            )
        except Exception as exc:
            logger.warning(
                "trigger %s: could not notify the error handler of failing connections: %s", self.spec.path, exc
            )
            return False
        logger.warning(
            "trigger %s: failing to connect since %s; error handler notified", self.spec.path, since.isoformat()
        )
        return True

    # The connection thread

    def _status(self, **fields):
        if "status" in fields:
            self.status = fields["status"]
        self._services.status.set(self.spec.id, self.spec.path, **fields)
        shown = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in fields.items()}
        self._services.monitor.event(
            self.spec.workspace_slug, {"type": "status", "trigger_path": self.spec.path, **shown}
        )

    def _wait_for_results_channel(self):
        deadline = time.monotonic() + RESULTS_SUBSCRIBE_TIMEOUT_SECS
        while not self._results_subscribed.is_set():
            if self._closing.wait(0.01) or time.monotonic() >= deadline:
                break
        if not self._results_subscribed.is_set() and not self._closing.is_set():
            logger.warning(
                "trigger %s: result channel not subscribed after %ss; connecting anyway (results may be lost until Redis answers)",
                self.spec.path,
                RESULTS_SUBSCRIBE_TIMEOUT_SECS,
            )

    def _run(self):
        self._wait_for_results_channel()
        backoff = Backoff(base=conf.backoff_min_secs(), cap=conf.backoff_max_secs())
        streak = FailureStreak(self, after_secs=conf.connection_error_notify_secs())
        first = True
        while not self._closing.is_set():
            if not first:
                metrics.RECONNECTS.inc()
            first = False
            try:
                delay = self._connect_and_serve(backoff, streak)
            except Exception as exc:
                # The outermost frame of one connection: a bug, not the network. Say so,
                # and reconnect as after any failure; the thread must not die with it.
                logger.exception("trigger %s: unexpected error in the connection; reconnecting", self.spec.path)
                metrics.CONNECTION_CRASHES.inc()
                self._status(status=Status.ERROR, error=f"internal error: {type(exc).__name__}: {exc}")
                delay = backoff.next_delay()
            if delay is None:
                break
            self._closing.wait(delay)
        logger.info("trigger %s: connection closed (%s)", self.spec.path, self._close_reason)

    def _connect_and_serve(self, backoff, streak):
        """One connection, from connect to its end; how long to wait before the next,
        or None when asked to close."""
        self._status(status=Status.CONNECTING, listener_id=self._services.listener_id)
        try:
            ws = self._connect()
        except ConnectFailed as exc:
            if self._closing.is_set():
                return None
            delay = backoff.cap_delay() if exc.permanent else backoff.next_delay()
            logger.warning("trigger %s: connection failed: %s; retrying in %.1fs", self.spec.path, exc.reason, delay)
            self._status(status=Status.ERROR, error=exc.reason)
            streak.failed(exc.reason)
            return delay
        streak.reset()
        connected_at = time.monotonic()
        reason = self._serve(ws)
        if self._closing.is_set():
            return None
        if time.monotonic() - connected_at >= conf.backoff_reset_after_secs():
            backoff.reset()
        delay = backoff.next_delay()
        logger.info("trigger %s: %s; reconnecting in %.1fs", self.spec.path, reason, delay)
        self._status(status=Status.CONNECTING, error=reason)
        return delay

    def _connect(self):
        """Open the socket and send the initial messages; the connected WebSocket."""
        url = resolve_url(
            self.spec.url,
            url_runnable_args=self.spec.url_runnable_args,
            workspace_id=self.spec.workspace_id,
            runnables=self._services.runnables,
            cancelled=self._closing,
        )
        ws = open_websocket(url, headers=self.spec.headers, subprotocols=self.spec.subprotocols)
        self._url = url
        self._heartbeat_state = None
        self._skipping_message = False
        try:
            self._send_initial_messages(ws)
        except BaseException:
            ws.abort()
            ws.shutdown()
            raise
        # Published only now: results never race ahead of the initial messages.
        self._ws = ws
        if self._closing.is_set():
            # Asked to close while connecting: close() found no socket to close, so
            # this thread (the only reader) does the closing handshake itself.
            self._ws = None
            ws.close(websocket.STATUS_NORMAL, timeout=1)
            ws.shutdown()
            raise ConnectFailed("closed while connecting")
        logger.info("trigger %s: connected to %s", self.spec.path, netguard.redact_url(url))
        self._status(
            status=Status.CONNECTED, error=None, last_connected_at=timezone.now(), subprotocol=ws.getsubprotocol()
        )
        return ws

    def _send_initial_messages(self, ws):
        for index, item in enumerate(self.spec.initial_messages):
            if "raw_message" in item:
                # A JSON string goes out unquoted; any other JSON text as written.
                parsed = json.loads(item["raw_message"])
                frame = parsed if isinstance(parsed, str) else item["raw_message"]
            elif "binary_message" in item:
                frame = base64.b64decode(item["binary_message"])
            else:
                runnable = item["runnable_result"]
                try:
                    result = self._services.runnables.call(
                        workspace_id=self.spec.workspace_id,
                        path=runnable["path"],
                        is_flow=runnable.get("is_flow", False),
                        args=runnable.get("args", {}),
                        cancelled=self._closing,
                    )
                except RunnableFailed as exc:
                    raise ConnectFailed(f"initial message {index}: runnable {exc}") from exc
                frame = result_frame(result)
            try:
                send_frame(ws, frame)
            except Exception as exc:
                raise ConnectFailed(f"initial message {index} could not be sent: {exc}") from exc

    def _serve(self, ws):
        """Receive until the connection ends; the reason it ended."""
        try:
            return self._receive(ws)
        except websocket.WebSocketConnectionClosedException:
            return "the server dropped the connection"
        except websocket.WebSocketPayloadException as exc:
            self._send_close(ws, 1007)
            return f"invalid frame from the server: {exc}"
        except websocket.WebSocketProtocolException as exc:
            self._send_close(ws, 1002)
            return f"protocol error: {exc}"
        except (OSError, websocket.WebSocketException) as exc:
            return f"connection lost: {exc.__class__.__name__}: {exc}"
        finally:
            self._ws = None
            ws.shutdown()

    @staticmethod
    def _send_close(ws, code):
        try:
            ws.send_close(code, b"")
        except Exception:
            pass

    def _receive(self, ws):
        ping_interval = conf.ping_interval_secs()
        pong_timeout = conf.pong_timeout_secs()
        heartbeat = self.spec.heartbeat
        now = time.monotonic()
        last_received = now
        ping_sent_at = None
        self._next_heartbeat = now + heartbeat["interval_secs"] if heartbeat else None
        while True:
            now = self._beat_if_due(ws)
            if ping_sent_at is not None:
                if now - ping_sent_at >= pong_timeout:
                    return f"no pong within {pong_timeout:g}s: connection presumed dead"
                wake_at = ping_sent_at + pong_timeout
            elif now - last_received >= ping_interval:
                ws.ping()
                ping_sent_at = now
                wake_at = now + pong_timeout
            else:
                wake_at = last_received + ping_interval
            if self._next_heartbeat is not None:
                wake_at = min(wake_at, self._next_heartbeat)
            ws.settimeout(max(wake_at - now, 0.001))
            try:
                frame = ws.recv_frame()
            except websocket.WebSocketTimeoutException:
                continue
            last_received = time.monotonic()
            ping_sent_at = None
            reason = self._handle_frame(ws, frame)
            if reason is not None:
                return reason

    def _beat_if_due(self, ws):
        """Send the heartbeat if it is due (from the receive loop, and while
        back-pressure holds this thread); the current monotonic time."""
        now = time.monotonic()
        if self._next_heartbeat is None or now < self._next_heartbeat:
            return now
        interval = self.spec.heartbeat["interval_secs"]
        if self._heartbeat_bytes is not None:
            ws.send_binary(self._heartbeat_bytes)
        else:
            ws.send(self.spec.heartbeat["message"].replace("{{state}}", json.dumps(self._heartbeat_state)))
        metrics.HEARTBEATS_SENT.inc()
        # Keep the cadence; after a long stall, restart it instead of bursting.
        self._next_heartbeat += interval
        if self._next_heartbeat <= now:
            self._next_heartbeat = now + interval
        return now

    def _handle_frame(self, ws, frame):
        """Act on one frame; a reason string when the connection ends."""
        opcode = frame.opcode
        if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
            self._on_data_frame(ws, frame)
            return None
        if opcode == ABNF.OPCODE_PING:
            ws.pong(frame.data)
            return None
        if opcode == ABNF.OPCODE_CLOSE:
            return self._on_close(ws, frame.data)
        return None

    def _on_data_frame(self, ws, frame):
        """Assemble messages from frames; refuse (and skip the rest of) one that grows
        past ORVANTA_MAX_MESSAGE_BYTES, keeping the connection."""
        ws.cont_frame.validate(frame)
        if self._skipping_message:
            if frame.fin:
                self._skipping_message = False
                ws.cont_frame.recving_frames = None
            return
        ws.cont_frame.add(frame)
        buffered = len(ws.cont_frame.cont_data[1]) if ws.cont_frame.cont_data else 0
        size = getattr(frame, "oversized", None) or buffered
        if size > self._max_message_bytes:
            # Forget the message; later fragments of it are skipped until its last.
            ws.cont_frame.cont_data = None
            self._skipping_message = not frame.fin
            self._refuse_oversized(size)
            return
        if ws.cont_frame.is_fire(frame):
            opcode, frame = ws.cont_frame.extract(frame)
            self._on_message(frame.data, opcode)

    def _refuse_oversized(self, size):
        metrics.FRAMES_DROPPED.labels("too_large").inc()
        reason = f"refused a message of {size}+ bytes (ORVANTA_MAX_MESSAGE_BYTES is {self._max_message_bytes})"
        logger.warning("trigger %s: %s", self.spec.path, reason)
        self._status(error=reason)

    def _on_close(self, ws, data):
        if self._closing.is_set():
            return self._close_reason
        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
        reason = data[2:].decode("utf-8", "replace")
        # websocket-client has already refused invalid codes (a protocol error).
        if code is None:
            self._send_close(ws, websocket.STATUS_NORMAL)
            return "the server closed the connection (no close code)"
        self._send_close(ws, code)
        return f"the server closed the connection (code {code}{': ' + reason if reason else ''})"

    def _on_message(self, data, opcode):
        spec = self.spec
        if opcode == ABNF.OPCODE_TEXT:
            try:
                msg, msg_type = data.decode("utf-8"), "text"
            except UnicodeDecodeError as exc:
                raise websocket.WebSocketPayloadException(f"a text frame is not valid UTF-8 ({exc.reason})") from exc
            metrics.TEXT_FRAMES_IN.inc()
        else:
            msg, msg_type = base64.b64encode(data).decode("ascii"), "binary"
            metrics.BINARY_FRAMES_IN.inc()
        self._services.status.touch(spec.id, spec.path)
        self._services.monitor.frame(
            spec.workspace_slug,
            spec.id,
            spec.path,
            at=timezone.now().isoformat(),
            msg=msg,
            msg_type=msg_type,
            url=self._url,
        )
        parsed = None
        state_field = self._state_field
        if msg_type == "text" and (spec.filters_need_json or state_field):
            parsed = filters.parse_json(msg)
            if state_field and isinstance(parsed, dict) and state_field in parsed:
                self._heartbeat_state = parsed[state_field]
        if not spec.matches(msg if msg_type == "text" else None, parsed):
            return
        metrics.FRAMES_MATCHED.inc()
        ws = self._ws
        self._services.dispatcher.submit(
            job_spec=spec.job_spec,
            msg=msg,
            msg_type=msg_type,
            url=self._url,
            cancelled=self._closing,
            while_waiting=lambda: self._beat_if_due(ws),
        )
