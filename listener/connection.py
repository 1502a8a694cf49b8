"""One trigger's WebSocket connection, on its own thread: resolve the URL, connect,
send the initial messages, then receive frames (turning matching ones into jobs)
and reconnect with backoff until closed.

The thread only reads: it blocks on the socket, so an idle connection costs nothing.
Heartbeats, protocol pings and the pong deadline run on the listener's shared timer
thread, and results are sent from the result router's thread; websocket-client
serialises sends with its own lock, and BoundedSocket bounds how long one may take
(and sends pings itself, each frame whole). Frames are read with websocket-client's
public `recv_frame`; messages are assembled, and control frames answered, here, as
RFC 6455 says. Pongs are taken by the BoundedSocket under it (Session.last_heard).
"""

import base64
import json
import logging
import struct
import threading
import time

import websocket
from django.utils import timezone
from websocket import ABNF

from listener import metrics
from listener.backoff import Backoff
from listener.keepalive import Keepalive
from listener.session import FailureStreak, Session, send_frame
from orvanta_triggers import conf, filters, monitor, netguard
from orvanta_triggers.client.connect import ConnectFailed, open_websocket, resolve_url
from orvanta_triggers.client.runnable_calls import RunnableFailed
from orvanta_triggers.models import Job, WebSocketTrigger
from orvanta_triggers.validation import PLACEHOLDER_RE
from orvanta_triggers.wire import NOTIFY_CONNECTION_FAILURE, reprs, result_frame

logger = logging.getLogger(__name__)

Status = WebSocketTrigger.Status


RESULTS_SUBSCRIBE_TIMEOUT_SECS = 5.0
# Sockets a listener opens at once. Thousands of connection threads handshaking
# together all wait for the GIL, and CPython wakes every waiter every switch interval:
# at 10,000 the machine spent itself on those wake-ups and connections trickled in.
# Connections waiting for an opener (listener.openers) sleep without taking part; 200
# keeps remote servers' round trips overlapping.
CONNECT_CONCURRENCY = 200
# How long, as a share of the ping interval, a connection that has had a frame waits
# for the next on its own thread before it parks (listener.parking): connections with
# traffic are never pinged, and parking them would add a hand-over to every frame
# (~20 us of CPU each: 2,000 feeds of a frame a second cost 15-19 % of a core
# waiting on their own, 20-22 % parked).
PARK_AFTER_PING_SHARE = 0.75


class Connection:
    def __init__(self, spec, services, *, results_subscribed, on_ended_unasked):
        self.spec = spec
        self._services = services
        self._results_subscribed = results_subscribed
        # Told from the thread's last frame, so the supervisor need not poll every
        # thread of every connection for liveness.
        self._on_ended_unasked = on_ended_unasked
        self._closing = threading.Event()
        self._session = None
        self._url = None
        self._thread = threading.Thread(target=self._main, name=f"ws:{spec.path}", daemon=True)
        # Settings read once per connection rather than per frame.
        self._max_message_bytes = conf.max_message_bytes()
        self._keepalive = Keepalive(
            self,
            timers=services.timers,
            ping_interval=conf.ping_interval_secs(),
            pong_timeout=conf.pong_timeout_secs(),
        )
        # Parked before its first ping is due, so the parking thread takes the pong.
        self._park_after = PARK_AFTER_PING_SHARE * conf.ping_interval_secs()
        self._state_field = (spec.heartbeat or {}).get("state_field")
        binary_heartbeat = (spec.heartbeat or {}).get("binary_message")
        self._heartbeat_bytes = base64.b64decode(binary_heartbeat) if binary_heartbeat else None
        # Values captured from incoming frames ({{name}} in heartbeat and resume
        # messages); kept across reconnects, which is what makes a resume possible.
        self._captured = {}
        self._close_reason = "closed by the listener"
        self._close_log_level = logging.INFO
        self.status = Status.CONNECTING

    # Lifecycle, called by the supervisor

    def start(self):
        self._thread.start()

    def close(self, reason="closed by the listener", *, log_level=logging.INFO, listener_stopping=False):
        """Ask the connection to end: a close frame now, the thread ends when the
        server answers it (join() forces the socket shut after a deadline). Its
        last line is logged at `log_level` (a stopping listener says it once for all).
        A stopping listener's close frame goes through the parking thread when the
        socket takes it at once (Parking.close_quietly): the server's answer is taken
        there and the reader never woken; answered_or_ended() tells when."""
        self._close_reason = reason
        self._close_log_level = log_level
        self._closing.set()
        session = self._session
        if session is None or not session.ws.connected:
            return
        try:
            if listener_stopping and self._services.parking.close_quietly(session.stream, websocket.STATUS_NORMAL):
                return
            session.ws.send_close(websocket.STATUS_NORMAL, b"")
        except (OSError, websocket.WebSocketException):
            session.abort(reason)
        else:
            session.stream.unpark()

    def answered_or_ended(self):
        """Whether the server has answered the close frame of a stopping listener (its
        socket shut by the parking thread) or the thread has ended."""
        if not self._thread.is_alive():
            return True
        session = self._session
        return session is not None and self._services.parking.close_answered(session.stream)

    def shut(self):
        """Shut the socket now, answered or not."""
        session = self._session
        if session is not None:
            session.abort(self._close_reason)

    def wait(self, timeout):
        """Wait up to `timeout` for the thread to end; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def join(self, timeout):
        self._thread.join(timeout)
        if self._thread.is_alive():
            session = self._session
            if session is not None:
                session.abort(self._close_reason)
            self._thread.join(1.0)

    def send_result(self, frame, job_id):
        """Send a job's result on the live socket; False when there is none."""
        session = self._session
        if session is None or not session.ws.connected or self._closing.is_set():
            return False
        try:
            send_frame(session.ws, frame)
        except (OSError, websocket.WebSocketException) as exc:
            logger.warning("trigger %s: could not send result of job %s: %s", self.spec.path, job_id, exc)
            session.abort(f"could not send a result: {exc}")
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
                **reprs(trigger_path=self.spec.path),
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
        # Waited for once: the event (a kilobyte with its condition) is not kept.
        subscribed, self._results_subscribed = self._results_subscribed, None
        if not subscribed.wait(RESULTS_SUBSCRIBE_TIMEOUT_SECS) and not self._closing.is_set():
            logger.warning(
                "trigger %s: result channel not subscribed after %ss; connecting anyway (results may be lost until Redis answers)",
                self.spec.path,
                RESULTS_SUBSCRIBE_TIMEOUT_SECS,
            )

    def _main(self):
        try:
            self._run()
        finally:
            # Whatever ended the thread (SystemExit included), unless asked to.
            if not self._closing.is_set():
                self._on_ended_unasked(self)

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
        logger.log(self._close_log_level, "trigger %s: connection closed (%s)", self.spec.path, self._close_reason)

    def _connect_and_serve(self, backoff, streak):
        """One connection, from connect to its end; how long to wait before the next,
        or None when asked to close."""
        self._status(status=Status.CONNECTING, listener_id=self._services.listener_id)
        try:
            session = self._connect()
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
        reason = self._serve(session)
        if self._closing.is_set():
            return None
        if time.monotonic() - connected_at >= conf.backoff_reset_after_secs():
            backoff.reset()
        delay = backoff.next_delay()
        logger.info("trigger %s: %s; reconnecting in %.1fs", self.spec.path, reason, delay)
        self._status(status=Status.CONNECTING, error=reason)
        return delay

    def _connect(self):
        """Open the socket and send the initial messages; the connected session."""
        url = resolve_url(
            self.spec.url,
            url_runnable_args=self.spec.url_runnable_args,
            workspace_id=self.spec.workspace_id,
            runnables=self._services.runnables,
            cancelled=self._closing,
            kind=Job.Kind.URL_RUNNABLE,
            trigger_path=self.spec.path,
        )
        ws = self._services.openers.run(self._open_websocket, url)
        self._url = url
        try:
            self._send_opening(ws)
        except BaseException:
            ws.abort()
            ws.shutdown()
            raise
        session = Session(ws)
        # Published only now: results never race ahead of the initial messages.
        self._session = session
        if self._closing.is_set():
            # Asked to close while connecting: close() found no socket to close, so
            # this thread (the only reader) does the closing handshake itself.
            self._session = None
            ws.close(websocket.STATUS_NORMAL, timeout=1)
            ws.shutdown()
            raise ConnectFailed("closed while connecting")
        logger.info("trigger %s: connected to %s", self.spec.path, netguard.redact_url(url))
        self._status(
            status=Status.CONNECTED, error=None, last_connected_at=timezone.now(), subprotocol=ws.getsubprotocol()
        )
        return session

    def _open_websocket(self, url):
        """On an opener thread (listener.openers says why)."""
        if self._closing.is_set():
            # Asked to close while waiting for an opener: no socket to open just to close it.
            raise ConnectFailed("closed while connecting")
        return open_websocket(url, headers=self.spec.headers, subprotocols=self.spec.subprotocols)

    def _send_opening(self, ws):
        """The resume message when one is configured and every value it uses is
        captured; the initial messages otherwise."""
        resume = self.spec.resume
        if resume and set(PLACEHOLDER_RE.findall(resume["message"])) <= set(self._captured):
            try:
                ws.send(self._render(resume["message"], state=None))
            except (OSError, websocket.WebSocketException) as exc:
                raise ConnectFailed(f"the resume message could not be sent: {exc}") from exc
            logger.info("trigger %s: resuming the session", self.spec.path)
            return
        self._send_initial_messages(ws)

    def _render(self, template, *, state):
        """`template` with {{state}} and each {{name}} of a capture replaced by the
        value's JSON (null when not known yet); other braces stay as written."""

        def value(match):
            name = match[1]
            if name == "state":
                return json.dumps(state)
            if name in self.spec.capture:
                return json.dumps(self._captured.get(name))
            return match[0]

        return PLACEHOLDER_RE.sub(value, template)

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
                        kind=Job.Kind.INITIAL_MESSAGE,
                        trigger_path=self.spec.path,
                    )
                except RunnableFailed as exc:
                    raise ConnectFailed(f"initial message {index}: runnable {exc}") from exc
                frame = result_frame(result)
            try:
                send_frame(ws, frame)
            except (OSError, websocket.WebSocketException) as exc:
                raise ConnectFailed(f"initial message {index} could not be sent: {exc}") from exc

    def _serve(self, session):
        """Receive until the connection ends; the reason it ended."""
        self._keepalive.start(session)
        session.stream.park_reads_on(self._services.parking, self.spec.path, park_after=self._park_after)
        ws = session.ws
        try:
            return self._receive(session)
        except ConnectFailed as exc:
            # The initial messages, sent again after the server refused a resume.
            return exc.reason
        except websocket.WebSocketConnectionClosedException:
            return session.end_reason or "the server dropped the connection"
        except websocket.WebSocketPayloadException as exc:
            self._send_close(ws, 1007)
            return f"invalid frame from the server: {exc}"
        except websocket.WebSocketProtocolException as exc:
            self._send_close(ws, 1002)
            return f"protocol error: {exc}"
        except (OSError, websocket.WebSocketException) as exc:
            return session.end_reason or f"connection lost: {exc.__class__.__name__}: {exc}"
        finally:
            session.ended = True
            self._keepalive.stop(session)
            self._session = None
            ws.shutdown()

    @staticmethod
    def _send_close(ws, code):
        try:
            ws.send_close(code, b"")
        except (OSError, websocket.WebSocketException):
            pass

    def _receive(self, session):
        """Read frames until the connection closes; the reason it closed. Messages
        are assembled from their frames; control frames may come between them."""
        ws, stream = session.ws, session.stream
        message_opcode = None
        parts = None
        while True:
            frame = ws.recv_frame()
            session.last_received = time.monotonic()
            opcode = frame.opcode
            if opcode in (ABNF.OPCODE_TEXT, ABNF.OPCODE_BINARY, ABNF.OPCODE_CONT):
                if opcode == ABNF.OPCODE_CONT:
                    if message_opcode is None:
                        raise websocket.WebSocketProtocolException("a continuation frame with no message to continue")
                elif message_opcode is not None:
                    raise websocket.WebSocketProtocolException("a new message before the last one ended")
                else:
                    message_opcode, parts = opcode, []
                if stream.refused_bytes is not None:
                    parts = None
                    if frame.fin:
                        self._refuse_oversized(stream.refused_bytes)
                elif parts is not None:
                    parts.append(frame.data)
                if frame.fin:
                    if parts is not None:
                        self._on_message(session, parts[0] if len(parts) == 1 else b"".join(parts), message_opcode)
                    message_opcode, parts = None, None
                continue
            if not frame.fin:
                raise websocket.WebSocketProtocolException("a fragmented control frame")
            if opcode == ABNF.OPCODE_PING:
                ws.pong(frame.data)
            elif opcode == ABNF.OPCODE_CLOSE:
                return self._on_close(ws, frame.data)

    def heartbeat_frame(self, session):
        """The heartbeat to send now: its binary message, or its message with the
        captured values (and {{state}}) filled in."""
        if self._heartbeat_bytes is not None:
            return self._heartbeat_bytes
        return self._render(self.spec.heartbeat["message"], state=session.heartbeat_state)

    # Frames

    def _refuse_oversized(self, size):
        metrics.FRAMES_DROPPED.labels("too_large").inc()
        reason = f"refused a message of {size}+ bytes (ORVANTA_MAX_MESSAGE_BYTES is {self._max_message_bytes})"
        logger.warning("trigger %s: %s", self.spec.path, reason)
        self._status(error=reason)

    def _on_close(self, ws, data):
        if self._closing.is_set():
            return self._close_reason
        if len(data) < 2:
            self._send_close(ws, websocket.STATUS_NORMAL)
            return "the server closed the connection (no close code)"
        # websocket-client has already refused invalid codes and lengths.
        code = struct.unpack("!H", data[:2])[0]
        try:
            reason = data[2:].decode("utf-8")
        except UnicodeDecodeError:
            self._send_close(ws, 1007)
            return f"the server closed the connection (code {code}) with a reason that is not UTF-8"
        self._send_close(ws, code)
        return f"the server closed the connection (code {code}{': ' + reason if reason else ''})"

    def _capture(self, parsed):
        """Keep the values the trigger captures from this frame; a missing or null
        value leaves the last one (a heartbeat ack with "s": null keeps the sequence)."""
        for name, path in self.spec.capture.items():
            value = filters.value_at(parsed, path)
            if value is not None:
                self._captured[name] = value

    def _on_message(self, session, data, opcode):
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
        text = msg if msg_type == "text" else None
        if text is not None and spec.needs_json:
            parsed = filters.parse_json(msg)
            if state_field and isinstance(parsed, dict) and state_field in parsed:
                session.heartbeat_state = parsed[state_field]
            self._capture(parsed)
        if spec.resume is not None and spec.resume_refused(text, parsed):
            # The server has no session to resume (or dropped it): start afresh.
            logger.info("trigger %s: the server refused the session; sending the initial messages", spec.path)
            self._captured.clear()
            self._send_initial_messages(session.ws)
        if not spec.matches(text, parsed):
            return
        metrics.FRAMES_MATCHED.inc()
        session.held = True
        try:
            self._services.dispatcher.submit(
                job_spec=spec.job_spec, msg=msg, msg_type=msg_type, url=self._url, cancelled=self._closing
            )
        finally:
            session.held = False
