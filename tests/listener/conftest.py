import pytest

from tests.rawservers import RawServer


@pytest.fixture
def raw_server():
    """Make misbehaving servers (tests/rawservers.py); all closed at the end."""
    servers = []

    def make(behaviour):
        server = RawServer(behaviour)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()
