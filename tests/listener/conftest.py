import pytest

from orvanta_triggers import bus
from tests.rawservers import RawServer
from tests.runnables import error_sink


@pytest.fixture(autouse=True)
def empty_error_sink():
    """Each test starts with the error handler of tests/runnables/error_sink.py uncalled."""
    bus.client().delete(error_sink.key())


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
