"""The WebSocket routes: the monitor always, the demo feed only in development."""

import json

import pytest
from asgiref.sync import async_to_sync
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from orvanta_triggers import routing


def connect_to_demo(debug, timeout=5):
    """(connected, first frame) of /ws/demo/ on the routes built with DEBUG=`debug`."""
    with override_settings(DEBUG=debug):
        application = URLRouter(routing.websocket_urlpatterns())

    async def scenario():
        communicator = WebsocketCommunicator(application, "/ws/demo/")
        connected, _ = await communicator.connect(timeout=timeout)
        first = json.loads(await communicator.receive_from(timeout=5))
        await communicator.disconnect()
        return connected, first

    return async_to_sync(scenario)()


def test_the_demo_feed_is_not_routed_in_production():
    """Without DJANGO_DEBUG there is no /ws/demo/ (it was open to anyone, without login)."""
    # The router's error reaches the communicator only once connect() times out: a short
    # one, since a route that existed would connect (or fail otherwise) and fail the test.
    with pytest.raises(ValueError, match="No route found for path 'ws/demo/'"):
        connect_to_demo(debug=False, timeout=0.5)


def test_the_demo_feed_is_routed_in_development():
    """With DJANGO_DEBUG (`make run`) /ws/demo/ accepts a connection and ticks."""
    connected, first = connect_to_demo(debug=True)
    assert connected and first["type"] == "tick"
