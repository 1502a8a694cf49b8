"""Channels consumers. The demo feed is the WebSocket server `make run` points its
demo trigger at: a JSON tick every second, and a log line for every message received."""

import asyncio
import json
import logging
from datetime import datetime, timezone

from channels.generic.websocket import AsyncWebsocketConsumer

logger = logging.getLogger(__name__)

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
        logger.info("demo feed: received %s", text_data if text_data is not None else f"{len(bytes_data)} bytes")

    async def _tick(self):
        n = 0
        while True:
            n += 1
            await self.send(json.dumps({"type": "tick", "n": n, "at": datetime.now(timezone.utc).isoformat()}))
            await asyncio.sleep(TICK_INTERVAL_SECS)
