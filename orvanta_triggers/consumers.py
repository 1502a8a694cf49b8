"""Channels consumers: the live monitor of a workspace, and the demo feed (the
WebSocket server `make run` points its demo trigger at: a JSON tick every second,
and a log line for every message received; routed only with DJANGO_DEBUG)."""

import asyncio
import json
import logging
from datetime import datetime, timezone
from importlib import import_module

from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError

from orvanta_triggers import monitor, netguard, selectors
from orvanta_triggers.logging import untrusted

logger = logging.getLogger(__name__)

SessionStore = import_module(settings.SESSION_ENGINE).SessionStore

TICK_INTERVAL_SECS = 1.0


class DemoFeedConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        self._ticker = asyncio.create_task(self._tick())
        logger.info("demo feed: client connected")

    async def disconnect(self, code):
        self._ticker.cancel()
        logger.info("demo feed: client disconnected (code %s)", code)

    async def receive(self, text_data=None, bytes_data=None):
        received = untrusted(text_data) if text_data is not None else f"{len(bytes_data)} bytes"
        logger.info("demo feed: received %s", received)

    async def _tick(self):
        n = 0
        while True:
            n += 1
            await self.send(json.dumps({"type": "tick", "n": n, "at": datetime.now(timezone.utc).isoformat()}))
            await asyncio.sleep(TICK_INTERVAL_SECS)


class MonitorConsumer(AsyncJsonWebsocketConsumer):
    """A workspace's live monitor: a snapshot on connect (every trigger's status and
    its latest frames), then every event the listeners and workers publish to the
    workspace's group. Members only, for as long as the socket is open: membership
    (and the login session) is checked again every MEMBERSHIP_RECHECK_SECS and on
    every membership change of the workspace, and the socket closed with 4403 once
    it is gone. Nothing polls for events."""

    SNAPSHOT_FRAMES = 10
    MEMBERSHIP_RECHECK_SECS = 3.0

    group = None
    _rechecks = None

    async def connect(self):
        self.slug = self.scope["url_route"]["kwargs"]["workspace"]
        workspace = await database_sync_to_async(self._member_workspace)(self.scope["user"], self.slug)
        if workspace is None:
            await self.close(code=4403)
            return
        self.group = monitor.group_name(workspace.slug)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"snapshot": await database_sync_to_async(self._snapshot)(workspace)})
        self._rechecks = asyncio.create_task(self._recheck_periodically())

    async def disconnect(self, code):
        if self._rechecks is not None:
            self._rechecks.cancel()
        await self._leave_group()

    async def monitor_events(self, message):
        if self.group is not None:
            await self.send_json({"events": message["events"]})

    async def monitor_membership(self, message):
        """A membership of the workspace changed (services.set_membership,
        services.remove_membership): check this socket's now."""
        await self._recheck()

    async def _recheck_periodically(self):
        while True:
            await asyncio.sleep(self.MEMBERSHIP_RECHECK_SECS)
            await self._recheck()

    async def _recheck(self):
        if self.group is None:
            return
        try:
            allowed = await self._still_a_member()
        except DatabaseError as exc:
            # The next check decides; a database outage doesn't close members' monitors.
            logger.warning("monitor %s: could not check membership: %s", self.slug, exc)
            return
        if allowed or self.group is None:
            return
        logger.info("monitor %s: %s is no longer a member (or logged out); closing", self.slug, self.scope["user"])
        await self._leave_group()
        await self.close(code=4403)

    async def _still_a_member(self):
        """The socket's session still logs its user in (not logged out, password
        unchanged, user active), and that user is still a member."""
        session = SessionStore(session_key=self.scope["session"].session_key)
        user = await get_user({"session": session})
        if user.pk != self.scope["user"].pk:
            return False
        return await database_sync_to_async(self._member_workspace)(user, self.slug) is not None

    async def _leave_group(self):
        group, self.group = self.group, None
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    @staticmethod
    def _member_workspace(user, slug):
        workspace = selectors.workspace_by_slug(slug)
        if workspace is None or selectors.membership_role(user=user, workspace=workspace) is None:
            return None
        return workspace

    def _snapshot(self, workspace):
        suspended = selectors.suspended_job_counts(workspace=workspace)
        triggers = []
        for trigger in selectors.workspace_triggers(workspace=workspace):
            try:
                frames = monitor.recent_frames(trigger.id, limit=self.SNAPSHOT_FRAMES)
            except Exception as exc:
                logger.warning("monitor %s: frames of %s unavailable: %s", workspace.slug, trigger.path, exc)
                frames = []
            triggers.append(
                {
                    "path": trigger.path,
                    "status": "disabled" if not trigger.enabled else trigger.status,
                    "mode": trigger.mode,
                    "suspended_jobs": suspended.get(trigger.path, 0),
                    "error": netguard.redact_text(trigger.error),
                    "last_message_at": trigger.last_message_at.isoformat() if trigger.last_message_at else None,
                    "listener_id": trigger.listener_id,
                    # The URL connected to (a URL runnable's, with its token) as the admin shows it.
                    "frames": [{**frame, "url": netguard.redact_text(frame.get("url"))} for frame in frames],
                }
            )
        return {"workspace": workspace.slug, "triggers": triggers}
