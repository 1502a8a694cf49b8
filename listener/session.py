"""One connected socket of a trigger (Session: what its reader thread and its timers
share), the streak of failed connects that tells the error handler, and sending a
frame of either kind."""

import time

from django.utils import timezone


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


class Session:
    """One connected socket of a trigger: what its reader thread and its timers share.
    Timers of a session that has ended do nothing."""

    def __init__(self, ws):
        self.ws = ws
        # websocket-client's socket is the BoundedSocket opened for it.
        self.stream = ws.sock
        # When the reader last got a frame; pongs are taken by the stream (last_heard).
        self.last_received = time.monotonic()
        self.ping_sent_at = None
        # The reader is held by dispatch back-pressure: it reads no pong meanwhile.
        self.held = False
        self.heartbeat_state = None
        self.next_heartbeat = None
        self.ended = False
        self.end_reason = None
        self.heartbeat_timer = None
        # Since when the socket has refused to take a frame, while it does.
        self.unwritable_since = None

    @property
    def last_heard(self):
        """When anything last came from the server: a frame, or a pong."""
        return max(self.last_received, self.stream.pong_at)

    def abort(self, reason):
        """End the session from another thread: its reader wakes and stops."""
        self.end_reason = reason
        try:
            self.ws.abort()
        except OSError:
            pass
