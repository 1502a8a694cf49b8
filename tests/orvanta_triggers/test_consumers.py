"""The live monitor: the page, and its WebSocket consumer over the real channels-redis
layer, fed by a real listener and worker."""

import asyncio
import json
import logging
import time

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from orvanta_triggers import bus, monitor, services
from orvanta_triggers.consumers import DemoFeedConsumer, MonitorConsumer
from orvanta_triggers.models import Job, Membership
from orvanta_triggers.monitor import MonitorPublisher
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs


def session_headers(user):
    client = Client()
    client.force_login(user)
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()), (b"origin", b"http://localhost")]


async def open_monitor(headers, slug):
    communicator = WebsocketCommunicator(application, f"/ws/monitor/{slug}/", headers=headers)
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


async def receive(communicator, timeout=10):
    return json.loads(await communicator.receive_from(timeout=timeout))


async def events_until(communicator, predicate, timeout=15):
    """Collect pushed events until one satisfies predicate; all collected."""
    seen = []
    while True:
        for event in (await receive(communicator, timeout)).get("events", []):
            seen.append(event)
            if predicate(event):
                return seen


@pytest.fixture
def owner(e2e_workspace):
    return e2e_workspace.memberships.get().user


def test_monitor_page_is_for_members_only(e2e_workspace, owner, django_user_model):
    """The page needs a login and a membership; members get the page."""
    client = Client()
    assert client.get("/monitor/e2e/").status_code == 302
    stranger = django_user_model.objects.create_user(username="stranger", password="pw")
    client.force_login(stranger)
    assert client.get("/monitor/e2e/").status_code == 404
    client.force_login(owner)
    response = client.get("/monitor/e2e/")
    assert response.status_code == 200 and b"/ws/monitor/" in response.content


def test_socket_refuses_non_members(e2e_workspace, django_user_model):
    """A logged-in non-member's monitor socket is closed at once."""
    headers = session_headers(django_user_model.objects.create_user(username="stranger", password="pw"))

    async def scenario():
        _, connected, code = await open_monitor(headers, "e2e")
        assert not connected and code == 4403

    async_to_sync(scenario)()


def test_socket_sends_a_snapshot_of_every_trigger(e2e_workspace, owner, ws_server):
    """On connect a member gets every trigger with its status."""
    make_trigger(e2e_workspace, ws_server, enabled=False)
    headers = session_headers(owner)

    async def scenario():
        communicator, connected, _ = await open_monitor(headers, "e2e")
        assert connected
        snapshot = (await receive(communicator))["snapshot"]
        await communicator.disconnect()
        return snapshot

    snapshot = async_to_sync(scenario)()
    assert [(t["path"], t["status"]) for t in snapshot["triggers"]] == [("f/test/feed", "disabled")]


def test_snapshot_shows_frame_urls_redacted(e2e_workspace, django_user_model, ws_server):
    """The URL a frame came in on (a URL runnable's, with its token) reaches no member in clear (viewers got it)."""
    trigger = make_trigger(e2e_workspace, ws_server, enabled=False)
    key = monitor.frames_key(trigger.id)
    frame = {"at": "2024-05-01T12:00:00+00:00", "msg": "hi", "msg_type": "text", "url": f"{ws_server.url}?token=s3cret"}
    bus.client().lpush(key, json.dumps(frame))
    viewer = django_user_model.objects.create_user(username="viewer", password="pw")
    services.set_membership(workspace=e2e_workspace, user=viewer, role=Membership.Role.VIEWER)
    headers = session_headers(viewer)

    async def scenario():
        communicator, _, _ = await open_monitor(headers, "e2e")
        snapshot = (await receive(communicator))["snapshot"]
        await communicator.disconnect()
        return snapshot

    try:
        frames = async_to_sync(scenario)()["triggers"][0]["frames"]
    finally:
        bus.client().delete(key)
    assert frames == [{**frame, "url": f"{ws_server.url}?token=***"}]


@pytest.fixture
def viewer_session(e2e_workspace, django_user_model):
    """(viewer, their logged-in Client, the monitor socket's headers for that session)."""
    viewer = django_user_model.objects.create_user(username="viewer", password="pw")
    services.set_membership(workspace=e2e_workspace, user=viewer, role=Membership.Role.VIEWER)
    client = Client()
    client.force_login(viewer)
    headers = [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()), (b"origin", b"http://localhost")]
    return viewer, client, headers


async def closed_with(communicator, timeout):
    """The close code the server sends within `timeout` seconds (events before it skipped)."""
    while True:
        output = await communicator.receive_output(timeout)
        if output["type"] == "websocket.close":
            return output.get("code")


def watch_until_closed(headers, act, *, timeout):
    """Open a monitor, run `act` (sync), and return (close code, seconds from act to close)."""

    async def scenario():
        communicator, connected, _ = await open_monitor(headers, "e2e")
        assert connected
        await receive(communicator)
        await sync_to_async(act)()
        started = time.monotonic()
        code = await closed_with(communicator, timeout)
        return code, time.monotonic() - started

    return async_to_sync(scenario)()


def test_removed_member_is_closed_at_once(e2e_workspace, viewer_session, monkeypatch):
    """Removing a member closes their open monitor with 4403 at once (it kept streaming)."""
    monkeypatch.setattr(MonitorConsumer, "MEMBERSHIP_RECHECK_SECS", 60)
    viewer, _, headers = viewer_session
    code, waited = watch_until_closed(
        headers, lambda: services.remove_membership(workspace=e2e_workspace, user=viewer), timeout=5
    )
    assert code == 4403 and waited < 2


def test_member_gone_unannounced_is_closed_within_seconds(viewer_session):
    """A member whose user is deleted (no membership service involved) is closed at the next check."""
    viewer, _, headers = viewer_session
    code, waited = watch_until_closed(headers, viewer.delete, timeout=MonitorConsumer.MEMBERSHIP_RECHECK_SECS + 3)
    assert code == 4403 and waited <= MonitorConsumer.MEMBERSHIP_RECHECK_SECS + 1


def test_logged_out_member_is_closed_within_seconds(viewer_session):
    """Logging out closes the monitors open on that session at the next check."""
    _, client, headers = viewer_session
    code, _ = watch_until_closed(headers, client.logout, timeout=MonitorConsumer.MEMBERSHIP_RECHECK_SECS + 3)
    assert code == 4403


def test_a_closed_monitor_gets_no_more_events(e2e_workspace, viewer_session, monkeypatch):
    """Once closed for a lost membership, the socket is sent nothing the workspace publishes."""
    monkeypatch.setattr(MonitorConsumer, "MEMBERSHIP_RECHECK_SECS", 60)
    viewer, _, headers = viewer_session
    publisher = MonitorPublisher()

    async def scenario():
        communicator, _, _ = await open_monitor(headers, "e2e")
        await receive(communicator)
        await sync_to_async(services.remove_membership)(workspace=e2e_workspace, user=viewer)
        await closed_with(communicator, 5)
        publisher.event("e2e", {"type": "status", "trigger_path": "f/x", "status": "connected"})
        await sync_to_async(publisher.flush)()
        return await communicator.receive_nothing(timeout=1)

    assert async_to_sync(scenario)()


def test_members_stay_connected_across_checks(e2e_workspace, viewer_session, monkeypatch):
    """A member's monitor survives its checks, a change of their role included, and goes on receiving events."""
    monkeypatch.setattr(MonitorConsumer, "MEMBERSHIP_RECHECK_SECS", 0.1)
    viewer, _, headers = viewer_session
    publisher = MonitorPublisher()

    async def scenario():
        communicator, _, _ = await open_monitor(headers, "e2e")
        await receive(communicator)
        await sync_to_async(services.set_membership)(workspace=e2e_workspace, user=viewer, role=Membership.Role.ADMIN)
        await asyncio.sleep(1)
        publisher.event("e2e", {"type": "status", "trigger_path": "f/x", "status": "connected"})
        await sync_to_async(publisher.flush)()
        seen = await events_until(communicator, lambda e: e["type"] == "status")
        await communicator.disconnect()
        return seen

    assert async_to_sync(scenario)()[-1]["trigger_path"] == "f/x"


def test_the_demo_feed_logs_what_it_receives_cut_and_on_one_line(caplog):
    """A 900 KB message with a forged log line in it is logged as one short line (it was logged whole)."""
    caplog.set_level(logging.INFO, logger="orvanta_triggers.consumers")
    message = "hello\n2024-05-01 12:00:00,000 ERROR django.security forged\r\n" + "x" * 900_000

    async def scenario():
        communicator = WebsocketCommunicator(DemoFeedConsumer.as_asgi(), "/ws/demo/")
        await communicator.connect(timeout=5)
        await communicator.send_to(text_data=message)
        await communicator.receive_from(timeout=5)  # a tick: the message was handled before it
        await communicator.disconnect()

    async_to_sync(scenario)()
    [logged] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("demo feed: received")]
    assert logged.startswith("demo feed: received hello\\n2024-05-01 12:00:00,000 ERROR django.security forged\\r\\n")
    assert logged.endswith(f"… ({len(message)} characters)") and len(logged) < 300
    assert "\n" not in logged and "\r" not in logged


def test_published_events_are_pushed_live(e2e_workspace, owner):
    """An event published for the workspace reaches its open monitors."""
    headers = session_headers(owner)
    publisher = MonitorPublisher()

    async def scenario():
        communicator, _, _ = await open_monitor(headers, "e2e")
        await receive(communicator)
        publisher.event("e2e", {"type": "status", "trigger_path": "f/x", "status": "connected"})
        await sync_to_async(publisher.flush)()
        seen = await events_until(communicator, lambda e: e["type"] == "status")
        await communicator.disconnect()
        return seen

    assert async_to_sync(scenario)()[-1]["trigger_path"] == "f/x"


def test_frames_jobs_and_results_arrive_live(e2e_workspace, owner, ws_server, celery_worker, listener):
    """A frame received, its job finishing and its result sent all show up, pushed."""
    make_trigger(e2e_workspace, ws_server, can_return_message=True, script_path="upper")
    wait_connected(ws_server)
    headers = session_headers(owner)

    async def scenario():
        communicator, _, _ = await open_monitor(headers, "e2e")
        await receive(communicator)
        await sync_to_async(ws_server.send_all)("live")
        seen = await events_until(communicator, lambda e: e["type"] == "result")
        if not any(e["type"] == "job" for e in seen):
            seen += await events_until(communicator, lambda e: e["type"] == "job")
        await communicator.disconnect()
        return {e["type"]: e for e in seen}

    kinds = async_to_sync(scenario)()
    assert kinds["frame"]["msg"] == "live" and kinds["result"]["frame"] == "LIVE"
    assert kinds["job"]["status"] == "success"


def test_suspended_jobs_show_in_the_snapshot_and_live(e2e_workspace, owner, ws_server, celery_worker, listener):
    """The snapshot gives a trigger's mode and suspended-job count; a job suspended, then a discard, arrive live."""
    make_trigger(e2e_workspace, ws_server, mode="suspended")
    wait_connected(ws_server)
    ws_server.send_all("held")
    [held] = wait_jobs(count=1, status=Job.Status.SUSPENDED)
    headers = session_headers(owner)

    async def scenario():
        communicator, _, _ = await open_monitor(headers, "e2e")
        [trigger] = (await receive(communicator))["snapshot"]["triggers"]
        await sync_to_async(ws_server.send_all)("held again")
        # The first job's own event may still be on its way: wait for the second's.
        suspended = await events_until(communicator, lambda e: e["type"] == "job" and e["job_id"] != str(held.id))
        await sync_to_async(services.discard_jobs)(workspace=e2e_workspace, trigger_path="f/test/feed")
        left = await events_until(communicator, lambda e: e["type"] == "suspended_jobs")
        await communicator.disconnect()
        return trigger, suspended[-1], left[-1]

    trigger, suspended, left = async_to_sync(scenario)()
    assert (trigger["mode"], trigger["suspended_jobs"]) == ("suspended", 1)
    assert suspended["status"] == "suspended" and left == {
        "type": "suspended_jobs",
        "trigger_path": "f/test/feed",
        "count": 0,
    }


def test_last_frames_are_kept_bounded(e2e_workspace, ws_server, listener):
    """Each trigger keeps its last 50 frames, newest first, for the monitor and the admin."""
    from orvanta_triggers.monitor import recent_frames
    from tests.support.wsserver import wait_for

    trigger = make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    for n in range(60):
        ws_server.send_all(f"f{n}")
    wait_for(
        lambda: recent_frames(trigger.id) and recent_frames(trigger.id)[0]["msg"] == "f59",
        timeout=5,
        message="the last frame stored",
    )
    frames = recent_frames(trigger.id, limit=100)
    assert len(frames) == 50 and frames[-1]["msg"] == "f10" and frames[0]["url"] == ws_server.url
