import pytest

from listener.timers import Timers
from orvanta_triggers import bus
from tests.listener.helpers import make_trigger
from tests.rawservers import RawServer
from tests.runnables import error_sink


@pytest.fixture
def timers():
    """A running timer thread of its own."""
    timers = Timers(name="test-timers")
    timers.start()
    yield timers
    timers.stop()


@pytest.fixture
def trigger_failing_to_connect(e2e_workspace, ws_server, settings):
    """A trigger whose server is down, error_sink its error handler, told of the failure
    after 0.5 s (ORVANTA_CONNECTION_ERROR_NOTIFY_SECS) while retrying every 0.3 s at most."""
    settings.ORVANTA_CONNECTION_ERROR_NOTIFY_SECS = 0.5
    settings.ORVANTA_BACKOFF_MAX_SECS = 0.3
    ws_server.stop()
    return make_trigger(e2e_workspace, ws_server, error_handler_path="error_sink")


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
