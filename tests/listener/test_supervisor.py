"""The listener follows the database: created, edited, disabled and deleted triggers."""

import datetime
import logging
import threading
import time

import pytest

from listener import supervisor as supervisor_module
from orvanta_triggers import selectors, services
from orvanta_triggers.models import Job, WebSocketTrigger
from tests.listener.helpers import fail_once, make_trigger, wait_connected
from tests.support.wsserver import wait_for


def three_triggers_connected(workspace, ws_server_factory, listener_factory):
    """(a listener, three servers): one trigger on each, all three connected."""
    servers = [ws_server_factory() for _ in range(3)]
    for index, server in enumerate(servers):
        make_trigger(workspace, server, path=f"f/test/t{index}")
    supervisor = listener_factory()
    for server in servers:
        wait_connected(server)
    return supervisor, servers


def test_created_trigger_connects_within_2s(e2e_workspace, ws_server, listener):
    """A trigger created while the listener runs is connected within 2 seconds."""
    started = time.monotonic()
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server, timeout=2)
    assert time.monotonic() - started < 2


def test_edited_url_moves_connection_within_2s(e2e_workspace, ws_server_factory, listener):
    """Changing the URL closes the old connection and opens the new one within 2 seconds."""
    old, new = ws_server_factory(), ws_server_factory()
    trigger = make_trigger(e2e_workspace, old)
    wait_connected(old)
    services.update_trigger(trigger=trigger, url=new.url)
    wait_for(lambda: new.open_connections == 1 and old.open_connections == 0, timeout=2, message="the move")


def test_edit_leaving_the_connection_alone_applies_without_reconnecting(
    e2e_workspace, ws_server, celery_worker, listener
):
    """A new filter applies to the next frames on the open connection: no reconnect, so no frame missed."""
    trigger = make_trigger(e2e_workspace, ws_server, filters=[{"key": "type", "value": "a"}])
    wait_connected(ws_server)
    services.update_trigger(trigger=trigger, filters=[{"key": "type", "value": "b"}])
    probes = iter(range(1000))
    wait_for(
        lambda: ws_server.send_all(f'{{"type": "b", "n": {next(probes)}}}') or Job.objects.exists(),
        timeout=10,
        interval=0.2,
        message="a frame matching the new filter to become a job",
    )
    assert (ws_server.connects, ws_server.open_connections) == (1, 1)


def test_disabled_trigger_closes_within_2s(e2e_workspace, ws_server, listener):
    """Disabling a trigger closes its connection within 2 seconds."""
    trigger = make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    services.set_trigger_enabled(trigger=trigger, enabled=False)
    wait_for(lambda: ws_server.open_connections == 0, timeout=2, message="the close")
    assert WebSocketTrigger.objects.get(pk=trigger.pk).status == "disabled"


def test_deleted_trigger_closes_within_2s(e2e_workspace, ws_server, listener):
    """Deleting a trigger closes its connection within 2 seconds."""
    trigger = make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    services.delete_trigger(trigger=trigger)
    wait_for(lambda: ws_server.open_connections == 0, timeout=2, message="the close")


def test_bulk_update_is_noticed_without_signals(e2e_workspace, ws_server, listener):
    """A queryset update that bumps edited_at (no service, no signal) still takes effect."""
    trigger = make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    WebSocketTrigger.objects.filter(pk=trigger.pk).update(mode="disabled", enabled=False)
    wait_for(lambda: ws_server.open_connections == 0, timeout=3, message="the close")


def test_an_edit_the_fingerprint_cant_see_is_applied_by_the_safety_net(
    e2e_workspace, ws_server_factory, listener_factory, monkeypatch
):
    """A URL changed with edited_at moved backwards (count, latest edit and ids all
    unchanged) is applied when the versions' digest is next compared."""
    monkeypatch.setattr(supervisor_module, "FULL_READ_INTERVAL_SECS", 1.0)
    listener_factory()
    old, new, other = ws_server_factory(), ws_server_factory(), ws_server_factory()
    trigger = make_trigger(e2e_workspace, old)
    make_trigger(e2e_workspace, other, path="f/test/newest")
    wait_connected(old)
    wait_connected(other)
    WebSocketTrigger.objects.filter(pk=trigger.pk).update(
        url=new.url, edited_at=trigger.edited_at - datetime.timedelta(seconds=1)
    )
    wait_for(lambda: new.open_connections == 1 and old.open_connections == 0, timeout=5, message="the move")


def test_the_safety_net_reads_the_trigger_set_only_when_its_digest_moved(
    e2e_workspace, ws_server, listener_factory, monkeypatch
):
    """With nothing changed, the periodic check compares the versions' digest and
    never reads every trigger's version (80 ms of a listener's CPU at 10,000)."""
    monkeypatch.setattr(supervisor_module, "FULL_READ_INTERVAL_SECS", 0.5)
    listener_factory()
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    calls = {"digest": 0, "versions": 0}

    def counted(name, real):
        def call():
            calls[name] += 1
            return real()

        return call

    monkeypatch.setattr(
        selectors, "listenable_trigger_versions_digest", counted("digest", selectors.listenable_trigger_versions_digest)
    )
    monkeypatch.setattr(
        selectors, "listenable_trigger_versions", counted("versions", selectors.listenable_trigger_versions)
    )
    wait_for(lambda: calls["digest"] >= 3, timeout=10, message="three digest comparisons")
    assert calls["versions"] == 0


def test_free_plan_triggers_are_ignored(e2e_workspace, ws_server, listener):
    """A trigger of a workspace moved to the free plan is not held."""
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    type(e2e_workspace).objects.filter(pk=e2e_workspace.pk).update(plan="free")
    wait_for(lambda: ws_server.open_connections == 0, timeout=3, message="the close")


def test_stop_closes_every_socket(e2e_workspace, ws_server_factory, transactional_db):
    """Setting the stop event closes every connection cleanly and releases leases."""
    import threading

    from config.celery import app as celery_app
    from listener.supervisor import Supervisor
    from orvanta_triggers import bus

    servers = [ws_server_factory() for _ in range(3)]
    for index, server in enumerate(servers):
        make_trigger(e2e_workspace, server, path=f"f/test/t{index}")
    stop_event = threading.Event()
    supervisor = Supervisor(celery_app=celery_app, stop_event=stop_event, listener_id="stopper")
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    for server in servers:
        wait_connected(server)
    started = time.monotonic()
    stop_event.set()
    thread.join(10)
    assert time.monotonic() - started < 5
    assert all(server.open_connections == 0 for server in servers)
    assert not any(bus.client().exists(bus.lease_key(t.pk)) for t in WebSocketTrigger.objects.all())


def test_a_stopping_listener_closes_parked_sockets_without_waking_their_readers(
    e2e_workspace, ws_server_factory, listener_factory, monkeypatch
):
    """On stop, every parked socket gets a 1000 close frame and is shut when its server answers; no reader is woken before the leases go."""
    from listener.connection import Connection
    from listener.leases import Leases

    threads = []
    real_start = Connection.start

    def recording_start(self):
        threads.append(self._thread)
        real_start(self)

    readers_alive_at_leave = []
    real_leave = Leases.leave

    def recording_leave(self):
        readers_alive_at_leave.append(sum(thread.is_alive() for thread in threads))
        real_leave(self)

    monkeypatch.setattr(Connection, "start", recording_start)
    monkeypatch.setattr(Leases, "leave", recording_leave)
    supervisor, servers = three_triggers_connected(e2e_workspace, ws_server_factory, listener_factory)
    wait_for(lambda: supervisor._parking.parked() == 3, timeout=5, message="every connection to park")
    supervisor.stop_event.set()
    wait_for(lambda: all(s.open_connections == 0 for s in servers), timeout=5, message="every close")
    wait_for(lambda: readers_alive_at_leave, timeout=5, message="the leases to be released")
    assert readers_alive_at_leave == [3]
    assert all(server.close_codes == [1000] for server in servers)


def test_a_stopping_listener_without_epoll_closes_every_socket(
    e2e_workspace, ws_server_factory, listener_factory, monkeypatch
):
    """Where there is no parking thread, a stopping listener's readers read their close answers themselves."""
    from listener import parking as parking_module

    monkeypatch.setattr(parking_module, "_epoll", None)
    supervisor, servers = three_triggers_connected(e2e_workspace, ws_server_factory, listener_factory)
    supervisor.stop_event.set()
    wait_for(lambda: all(s.open_connections == 0 for s in servers), timeout=5, message="every close")
    assert all(server.close_codes == [1000] for server in servers)


# The injected exit escapes the thread, as an unexpected one would: that is the input.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_connection_thread_that_ended_is_started_again(e2e_workspace, ws_server, listener, monkeypatch):
    """A connection thread that ends without being asked is noticed and started again."""
    from listener.connection import Connection

    fail_once(monkeypatch, Connection, "_connect_and_serve", SystemExit("injected: the thread ends"))
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server, timeout=5)


def test_connections_beyond_the_openers_all_connect(e2e_workspace, ws_server_factory, listener_factory, monkeypatch):
    """With one opener thread, triggers still all connect, one socket opening at a time."""
    monkeypatch.setattr(supervisor_module, "CONNECT_CONCURRENCY", 1)
    _, servers = three_triggers_connected(e2e_workspace, ws_server_factory, listener_factory)


def test_stop_beyond_the_close_window_closes_every_socket(
    e2e_workspace, ws_server_factory, listener_factory, monkeypatch
):
    """Stopping more connections than the close window holds closes them all, a window at a time."""
    monkeypatch.setattr(supervisor_module, "CLOSE_WINDOW", 2)
    servers = [ws_server_factory() for _ in range(5)]
    for index, server in enumerate(servers):
        make_trigger(e2e_workspace, server, path=f"f/test/t{index}")
    listener_factory()
    for server in servers:
        wait_connected(server)
    WebSocketTrigger.objects.update(mode="disabled", enabled=False)
    wait_for(lambda: all(s.open_connections == 0 for s in servers), timeout=5, message="every close")


def test_sockets_are_opened_on_opener_threads(e2e_workspace, ws_server, listener_factory, monkeypatch):
    """The handshake runs on a shared opener thread, never on the connection's own (whose stack stays shallow)."""
    from listener import connection as connection_module

    opened_on = []
    real_open = connection_module.open_websocket

    def recording_open(*args, **kwargs):
        opened_on.append(threading.current_thread().name)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(connection_module, "open_websocket", recording_open)
    make_trigger(e2e_workspace, ws_server)
    listener_factory()
    wait_connected(ws_server)
    assert len(opened_on) == 1 and opened_on[0].startswith("opener-")


def test_a_stopping_listener_logs_its_closes_in_one_line(e2e_workspace, ws_server_factory, listener_factory, caplog):
    """Stopping logs one INFO line for all its connections; each connection's own close line is DEBUG."""
    caplog.set_level(logging.INFO)
    supervisor, servers = three_triggers_connected(e2e_workspace, ws_server_factory, listener_factory)
    supervisor.stop_event.set()
    wait_for(
        lambda: any("closed 3 connections" in record.getMessage() for record in caplog.records),
        timeout=10,
        message="the listener's closing line",
    )
    assert not [record for record in caplog.records if "connection closed (listener stopping)" in record.getMessage()]


def test_a_stopping_listener_stops_pings_and_heartbeats_before_closing_sockets(
    e2e_workspace, ws_server, listener_factory, monkeypatch
):
    """On stop, the timer thread (pings, heartbeats) has ended before the first socket is asked to close."""
    from listener.connection import Connection

    timers_alive_at_close = []
    real_close = Connection.close

    def recording_close(self, *args, **kwargs):
        timers_alive_at_close.append(supervisor._timers.is_alive())
        return real_close(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "close", recording_close)
    make_trigger(e2e_workspace, ws_server, heartbeat={"interval_secs": 1, "message": "hb"})
    supervisor = listener_factory()
    wait_connected(ws_server)
    supervisor.stop_event.set()
    wait_for(lambda: ws_server.open_connections == 0, timeout=10, message="the socket closed")
    assert timers_alive_at_close == [False]


def test_a_connection_waits_for_frames_on_the_parking_thread(e2e_workspace, ws_server, listener_factory):
    """A connected trigger between frames waits on the shared parking thread, not in its own poll()."""
    make_trigger(e2e_workspace, ws_server)
    supervisor = listener_factory()
    wait_connected(ws_server)
    wait_for(lambda: supervisor._parking.parked() == 1, timeout=5, message="the connection to park")


def test_an_ended_parking_thread_is_started_again(e2e_workspace, ws_server, listener_factory, caplog, settings):
    """A parking thread that ended is restarted within a reconcile interval, and connections park on it again."""
    # A connection that has had a frame parks after 0.75 of the ping interval.
    settings.ORVANTA_PING_INTERVAL_SECS = 1.0
    make_trigger(e2e_workspace, ws_server)
    supervisor = listener_factory()
    wait_connected(ws_server)
    wait_for(lambda: supervisor._parking.parked() == 1, timeout=5, message="the connection to park")
    with caplog.at_level(logging.ERROR, logger="listener.supervisor"):
        supervisor._parking.stop()
        wait_for(lambda: supervisor._parking.is_alive(), timeout=3, message="the parking thread to restart")
    assert "parking thread ended" in caplog.text
    ws_server.send_all("after the restart")
    wait_for(lambda: supervisor._parking.parked() == 1, timeout=5, message="the connection to park again")
