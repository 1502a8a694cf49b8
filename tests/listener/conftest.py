import pytest

from tests.rawservers import RawServer


@pytest.fixture
def raw_server(listener_factory):
    """Make misbehaving servers (tests/rawservers.py); all closed at the end, before the
    listener stops: a server that never answers the listener's close frame would keep
    the listener waiting out its close timeout (2 s) on every such test."""
    servers = []

    def make(behaviour):
        server = RawServer(behaviour)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
