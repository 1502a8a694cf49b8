"""The Redis channel layer of the monitor's sockets: channels-redis's, on connections
whose writes never drop a cancellation.

redis-py bounds every write with `asyncio.wait_for`. On Python 3.11, `wait_for` returns
the write's result when the write completed in the same loop turn as its caller was
cancelled, and the cancellation is lost (fixed in 3.12 by gh-96764). A monitor socket's
`receive` cancelled at that instant then popped its channel every 5 s forever: the
socket's application never ended, and the event loop running it never closed."""

import asyncio
import functools

from channels_redis import core


class _CancellationKeepingWrites:
    """Raises a cancellation requested while a command was being written, once the
    write returns: the command's reply is then never read, so the connection is
    dropped first (the next command must not read it)."""

    async def send_packed_command(self, command, check_health=True):
        task = asyncio.current_task()
        cancels_before = task.cancelling()
        await super().send_packed_command(command, check_health)
        if task.cancelling() > cancels_before:
            await self.disconnect(nowait=True)
            raise asyncio.CancelledError


@functools.cache
def _keeping_cancellations(connection_class):
    return type(f"{connection_class.__name__}KeepingCancellations", (_CancellationKeepingWrites, connection_class), {})


class RedisChannelLayer(core.RedisChannelLayer):
    def create_pool(self, index):
        pool = super().create_pool(index)
        pool.connection_class = _keeping_cancellations(pool.connection_class)
        return pool
