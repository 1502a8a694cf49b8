"""The channel layer the monitor's sockets run on, against the real Redis."""

import asyncio

from channels.layers import get_channel_layer

CANCEL_POINTS = 40


def test_a_cancelled_receive_always_ends():
    """A receive cancelled at any step of its Redis commands ends, cancelled, instead of popping its channel forever."""
    layer = get_channel_layer()

    async def cancel_after(steps):
        receive = asyncio.ensure_future(layer.receive(await layer.new_channel()))
        for _ in range(steps):
            await asyncio.sleep(0)
        receive.cancel()
        done, _ = await asyncio.wait([receive], timeout=2 * layer.brpop_timeout)
        return receive in done and receive.cancelled()

    async def scenario():
        return [steps for steps in range(CANCEL_POINTS) for _ in range(5) if not await cancel_after(steps)]

    assert asyncio.run(scenario()) == []
