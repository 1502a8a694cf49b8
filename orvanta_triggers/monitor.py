"""What the live monitor shows: the last frames of each trigger (kept in Redis,
bounded) and events pushed to a workspace's monitor group on the Channels layer.

Producers (the listener, workers) never send per event: `MonitorPublisher` batches
events on a thread of its own and flushes them a few times a second.
"""

import asyncio
import collections
import json
import logging
import threading

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from orvanta_triggers import bus, conf

logger = logging.getLogger(__name__)

FRAMES_KEPT = 50
# Frames are kept whole up to this size (so they can be replayed), cut beyond it.
FRAME_KEEP_BYTES = 65536
# Live events carry at most this much of a message or result.
EVENT_TEXT_CHARS = 1000
FLUSH_INTERVAL_SECS = 0.2
# A page shows at most this many events of a workspace per flush (1,000 a second);
# beyond that it is told how many it did not get.
EVENTS_PER_FLUSH = 200


def shorten(text, limit=EVENT_TEXT_CHARS):
    return text if len(text) <= limit else text[:limit] + "…"


def frames_key(trigger_id):
    return f"{conf.redis_prefix()}frames:{trigger_id}"


def group_name(workspace_slug):
    """The Channels group of a workspace's monitor pages."""
    return f"monitor.{workspace_slug}"


def _send_soon(workspace_slug, message, *, what):
    """Send `message` to the workspace's monitor group from a thread of its own: the
    caller (a write in a request) never waits on Redis, and may run where an event
    loop does (AsyncToSync can't)."""

    def send():
        try:
            async_to_sync(get_channel_layer().group_send)(group_name(workspace_slug), message)
        except (redis.RedisError, OSError) as exc:
            logger.warning("monitor %s: could not send %s: %s", workspace_slug, what, exc)

    threading.Thread(target=send, name="monitor-send", daemon=True).start()


def notify_membership_changed(workspace_slug):
    """Tell the workspace's open monitors that one of its memberships changed: each
    checks its own at once (consumers.MonitorConsumer); without Redis they still check
    within seconds."""
    _send_soon(workspace_slug, {"type": "monitor.membership"}, what="a membership change")


def send_events(workspace_slug, events):
    """Show `events` on the workspace's open monitors now (for writes made outside
    the listener and the workers, which batch theirs in a MonitorPublisher)."""
    _send_soon(workspace_slug, {"type": "monitor.events", "events": events}, what=f"{len(events)} events")


def recent_frames(trigger_id, limit=FRAMES_KEPT):
    """The trigger's last frames, newest first: [{"at", "msg", "msg_type", "url"}]."""
    return [json.loads(item) for item in bus.client().lrange(frames_key(trigger_id), 0, limit - 1)]


class MonitorPublisher:
    """Collects monitor events and stored frames; a thread flushes them in batches:
    frames to their Redis lists (trimmed to FRAMES_KEPT), events to each
    workspace's group (at most EVENTS_PER_FLUSH, then a count of the rest). Never
    blocks the caller; what can't be published while Redis is away is logged."""

    def __init__(self):
        self._lock = threading.Lock()
        self._events = collections.defaultdict(list)
        self._skipped = collections.Counter()
        self._frames = collections.defaultdict(list)
        self._stop = threading.Event()
        self._thread = None
        # One event loop, kept for the publisher's life: channels-redis pools its Redis
        # connections per loop, and async_to_sync made a thread, a loop and a connection
        # per flush (a sixth of a busy worker process's time). The lock keeps stop()'s
        # last flush off a loop the thread may still be running.
        self._loop = None
        self._flushing = threading.Lock()

    def start(self):
        self._thread = threading.Thread(target=self._run, name="monitor-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        with self._flushing:
            if self._loop is not None:
                # channels-redis closes this loop's connections as the loop closes.
                self._loop.close()
                self._loop = None

    def event(self, workspace_slug, event):
        """Queue an event ({"type": "frame"|"job"|"result"|"status", ...}) for the
        workspace's monitor pages."""
        with self._lock:
            events = self._events[workspace_slug]
            if len(events) < EVENTS_PER_FLUSH:
                events.append(event)
            else:
                self._skipped[workspace_slug] += 1

    def frame(self, workspace_slug, trigger_id, trigger_path, *, at, msg, msg_type, url):
        """Keep a received frame for replay (whole up to FRAME_KEEP_BYTES, else cut
        and marked `truncated`) and show it live."""
        entry = {"at": at, "msg": msg, "msg_type": msg_type, "url": url}
        if len(msg) > FRAME_KEEP_BYTES:
            entry.update(msg=msg[:FRAME_KEEP_BYTES], truncated=True)
        with self._lock:
            self._frames[trigger_id].append(entry)
        self.event(
            workspace_slug,
            {
                "type": "frame",
                "trigger_path": trigger_path,
                "at": at,
                "msg": shorten(msg),
                "msg_type": msg_type,
            },
        )

    def flush(self):
        with self._flushing:
            self._flush()

    def _flush(self):
        with self._lock:
            events, self._events = self._events, collections.defaultdict(list)
            skipped, self._skipped = self._skipped, collections.Counter()
            frames, self._frames = self._frames, collections.defaultdict(list)
        for workspace_slug, count in skipped.items():
            events[workspace_slug].append({"type": "skipped", "count": count})
        try:
            if frames:
                pipe = bus.client().pipeline(transaction=False)
                for trigger_id, entries in frames.items():
                    key = frames_key(trigger_id)
                    pipe.lpush(key, *[json.dumps(e) for e in entries[-FRAMES_KEPT:]])
                    pipe.ltrim(key, 0, FRAMES_KEPT - 1)
                pipe.execute()
            if events:
                self._loop = self._loop or asyncio.new_event_loop()
                layer = get_channel_layer()
                for workspace_slug, batch in events.items():
                    self._loop.run_until_complete(
                        layer.group_send(group_name(workspace_slug), {"type": "monitor.events", "events": batch})
                    )
        except Exception as exc:
            logger.warning("monitor: could not publish %s events: %s", sum(map(len, events.values())), exc)

    def _run(self):
        while not self._stop.wait(FLUSH_INTERVAL_SECS):
            self.flush()
