"""Opening a trigger's socket (orvanta_triggers.client.connect), against a real server."""

import socket

import pytest

from orvanta_triggers.client.connect import open_websocket


@pytest.mark.django_db
def test_the_socket_sends_small_frames_at_once(ws_server, settings):
    """The sockets it opens have TCP_NODELAY: a result is not held back by Nagle's algorithm."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = True
    ws = open_websocket(ws_server.url, headers={}, subprotocols=[])
    try:
        assert ws.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        ws.close()
