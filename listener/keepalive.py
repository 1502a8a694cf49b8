"""A session's timed work, on the listener's shared timer thread: protocol pings
when the connection has been quiet, the pong deadline, the trigger's heartbeat at its
cadence, and never waiting on a peer whose socket takes nothing.

Pings and pong deadlines are coarse timers (Timers.call_coarse): each may come up to
one slot (COARSE_SLOT_SECS) late, and those of many connections share a wake.
Heartbeats keep their exact cadence."""

import functools
import logging
import time

from listener import metrics
from orvanta_triggers.client.connect import SEND_TIMEOUT_SECS

logger = logging.getLogger(__name__)

# How soon a heartbeat or ping that found the socket full looks again (a ping: in
# the slot that holds this time).
UNWRITABLE_RETRY_SECS = 0.05


class Keepalive:
    """The timers of one connection's sessions (the connection gives its current spec
    and heartbeat frames: an edit applied in place reaches the next beat)."""

    def __init__(self, connection, *, timers, ping_interval, pong_timeout):
        self._connection = connection
        self._timers = timers
        self._ping_interval = ping_interval
        self._pong_timeout = pong_timeout

    def __repr__(self):
        # Shown when a timer fails.
        return f"<Keepalive of trigger {self._connection.spec.path}>"

    def start(self, session):
        """Start a new session's ping schedule, and its heartbeat if the trigger has one."""
        self._schedule_keepalive(session, time.monotonic() + self._ping_interval)
        heartbeat = self._connection.spec.heartbeat
        if heartbeat:
            session.next_heartbeat = time.monotonic() + heartbeat["interval_secs"]
            self._schedule_beat(session, session.next_heartbeat)

    @staticmethod
    def stop(session):
        """Cancel an ended session's heartbeat (its keepalive check finds it ended)."""
        if session.heartbeat_timer is not None:
            session.heartbeat_timer.cancel()

    def _schedule_keepalive(self, session, when):
        self._timers.call_coarse(when, self._keepalive, session)

    def _keepalive(self, session):
        """Ping a connection that has been quiet for the ping interval; end one whose
        ping went unanswered for the pong timeout."""
        if session.ended:
            return
        now = time.monotonic()
        if session.held:
            session.ping_sent_at = None
            self._schedule_keepalive(session, now + self._ping_interval)
            return
        last_heard = session.last_heard
        if session.ping_sent_at is not None and last_heard < session.ping_sent_at:
            if now - session.ping_sent_at >= self._pong_timeout:
                logger.info(
                    "trigger %s: no pong within %gs; reconnecting", self._connection.spec.path, self._pong_timeout
                )
                session.abort(f"no pong within {self._pong_timeout:g}s: connection presumed dead")
                return
            self._schedule_keepalive(session, session.ping_sent_at + self._pong_timeout)
            return
        if now - last_heard >= self._ping_interval:
            try:
                sent = session.stream.send_ping()
            except OSError as exc:
                session.abort(f"could not send a ping: {exc}")
                return
            if not sent:
                self._refused(session, functools.partial(self._schedule_keepalive, session))
                return
            session.unwritable_since = None
            session.ping_sent_at = now
            self._schedule_keepalive(session, now + self._pong_timeout)
            return
        self._schedule_keepalive(session, last_heard + self._ping_interval)

    def _refused(self, session, retry_at):
        """The socket took no frame: look again a little later, unless the peer has
        read nothing for SEND_TIMEOUT_SECS (then the session ends)."""
        now = time.monotonic()
        if session.unwritable_since is None:
            session.unwritable_since = now
        if now - session.unwritable_since >= SEND_TIMEOUT_SECS:
            session.abort(f"the server read nothing for {SEND_TIMEOUT_SECS:g}s")
        else:
            retry_at(now + UNWRITABLE_RETRY_SECS)

    def _beat(self, session):
        """Send the heartbeat and schedule the next, keeping the cadence."""
        if session.ended:
            return
        heartbeat = self._connection.spec.heartbeat
        frame = self._connection.heartbeat_frame(session)
        try:
            sent = session.stream.send_message_now(frame)
        except OSError as exc:
            session.abort(f"could not send the heartbeat: {exc}")
            return
        if not sent:
            self._refused(session, functools.partial(self._schedule_beat, session))
            return
        session.unwritable_since = None
        metrics.HEARTBEATS_SENT.inc()
        now = time.monotonic()
        interval = heartbeat["interval_secs"]
        # After a long stall, restart the cadence instead of bursting.
        session.next_heartbeat += interval
        if session.next_heartbeat <= now:
            session.next_heartbeat = now + interval
        self._schedule_beat(session, session.next_heartbeat)

    def _schedule_beat(self, session, when):
        session.heartbeat_timer = self._timers.call_at(when, functools.partial(self._beat, session))
