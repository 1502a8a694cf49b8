"""What users point triggers at, end to end (a real listener and Celery worker): a
private Mosquitto speaking MQTT over WebSocket and a private RabbitMQ node speaking
STOMP over WebSocket (tests/brokers.py), and a Discord-style gateway
(tests/discord_gateway.py). Each trigger is shaped as the README's worked example."""

import base64
import itertools
import json

import pytest

from orvanta_triggers import monitor
from orvanta_triggers.models import Job, WebSocketTrigger
from tests.brokers import (
    MQTT_CONNACK,
    MQTT_PINGREQ,
    MQTT_PINGRESP,
    MQTT_PUBLISH,
    MQTT_SUBACK,
    mqtt_connect,
    mqtt_packet_type,
    mqtt_publish,
    mqtt_subscribe,
    stomp_frame,
)
from tests.discord_gateway import DiscordGateway
from tests.listener.helpers import make_trigger, wait_jobs
from tests.support.wsserver import wait_for

# The brokers live for the whole session: every test has topics, queues and client ids of its own.
_names = itertools.count(1)


def unique(prefix):
    return f"{prefix}-{next(_names)}"


def b64(data):
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module", autouse=True)
def launch_rabbitmq_early(request):
    """When a test here needs RabbitMQ, its node boots (seconds of CPU) while the MQTT tests run."""
    if any("rabbitmq" in item.fixturenames for item in request.session.items):
        request.getfixturevalue("rabbitmq_launched")


# MQTT


def make_mqtt_trigger(workspace, broker, topic, *, keepalive_secs):
    return make_trigger(
        workspace,
        broker,
        subprotocols=["mqtt"],
        # Echoes msg and msg_type: the job's args show the packet's base64 and "binary".
        script_path="msg_type",
        initial_messages=[
            {"binary_message": b64(mqtt_connect(unique("orvanta"), keepalive_secs=keepalive_secs))},
            {"binary_message": b64(mqtt_subscribe(topic))},
        ],
        heartbeat={"interval_secs": 1, "binary_message": b64(MQTT_PINGREQ)},
    )


def packets(packet_type=None):
    """The MQTT packets that became jobs (of `packet_type`, if given)."""
    found = [base64.b64decode(args["msg"]) for args in Job.objects.values_list("args", flat=True)]
    return [packet for packet in found if packet_type is None or mqtt_packet_type(packet) == packet_type]


def wait_packets(packet_type, count, *, timeout=15):
    return wait_for(
        lambda: len(found := packets(packet_type)) >= count and found,
        timeout=timeout,
        message=f"{count} job(s) of MQTT packet type {packet_type}",
    )


def test_mqtt_publish_packets_become_jobs(e2e_workspace, mosquitto, celery_worker, listener):
    """Messages published on the subscribed topic reach the trigger as PUBLISH packets, one binary job each."""
    topic = unique("sensors/temp")
    trigger = make_mqtt_trigger(e2e_workspace, mosquitto, topic, keepalive_secs=60)
    # SUBACK: the subscription is in place, so nothing published from now on is missed.
    wait_packets(MQTT_SUBACK, 1)
    payloads = [b"21.5", b"\x00\xff binary payload", b"22.0"]
    mosquitto.publish(topic, *payloads)
    published = wait_packets(MQTT_PUBLISH, 3)
    assert sorted(published) == sorted(mqtt_publish(topic, payload) for payload in payloads)
    jobs = Job.objects.all()
    assert {(job.status, job.args["msg_type"]) for job in jobs} == {(Job.Status.SUCCESS, "binary")}
    # Status is written a few times a second, apart from jobs: it may come after them.
    wait_for(
        lambda: WebSocketTrigger.objects.get(pk=trigger.pk).subprotocol == "mqtt",
        timeout=5,
        message="the broker's subprotocol in the trigger's status",
    )


def test_mqtt_pingreq_heartbeat_keeps_the_session(e2e_workspace, mosquitto, celery_worker, listener):
    """PINGREQ every second keeps a 2 s keep-alive session past the 3 s Mosquitto allows a silent client; PINGRESPs are jobs like any packet."""
    make_mqtt_trigger(e2e_workspace, mosquitto, unique("keepalive"), keepalive_secs=2)
    wait_packets(MQTT_PINGRESP, 4)
    assert len(packets(MQTT_CONNACK)) == 1, "the broker dropped the session and the listener reconnected"
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.SUCCESS}


# STOMP


def make_stomp_trigger(workspace, broker, queue, *, heart_beat, **fields):
    connect = stomp_frame(
        "CONNECT",
        {"accept-version": "1.2", "host": "/", "login": "guest", "passcode": "guest", "heart-beat": heart_beat},
    )
    subscribe = stomp_frame("SUBSCRIBE", {"id": "0", "destination": f"/queue/{queue}", "ack": "auto"})
    return make_trigger(
        workspace,
        broker,
        subprotocols=["v12.stomp"],
        # A JSON string goes out as its text: the frame, NUL included.
        initial_messages=[{"raw_message": json.dumps(connect)}, {"raw_message": json.dumps(subscribe)}],
        filters=[{"regex": "^MESSAGE\n"}],
        **fields,
    )


def stomp_body(frame):
    """A frame's body: after the blank line, up to the NUL."""
    return frame.split("\n\n", 1)[1].split("\x00", 1)[0]


def wait_frames(trigger, predicate, *, message, timeout=10):
    """Wait until predicate(texts of the trigger's received frames, oldest first) holds; those texts."""

    def frames():
        texts = [frame["msg"] for frame in reversed(monitor.recent_frames(trigger.id))]
        return predicate(texts) and texts

    return wait_for(frames, timeout=timeout, message=message)


def connected_and_heart_beats(count):
    return lambda texts: texts and texts[0].startswith("CONNECTED\n") and texts.count("\n") >= count


def test_stomp_message_frames_become_one_job_each(e2e_workspace, rabbitmq, celery_worker, listener):
    """Each message sent to the queue is one job holding its MESSAGE frame; CONNECTED and heart-beats are none."""
    queue = unique("orders")
    trigger = make_stomp_trigger(e2e_workspace, rabbitmq, queue, heart_beat="0,500")
    wait_frames(trigger, connected_and_heart_beats(2), message="CONNECTED and two heart-beats")
    bodies = ["order 1", "order 2", "order 3"]
    rabbitmq.send(f"/queue/{queue}", *bodies)
    jobs = wait_jobs(count=3, status=Job.Status.SUCCESS)
    frames = [job.args["msg"] for job in jobs]
    assert all(frame.startswith("MESSAGE\n") and f"\ndestination:/queue/{queue}\n" in frame for frame in frames)
    assert all(frame.endswith("\x00\n") for frame in frames), "the NUL and the newline RabbitMQ adds"
    assert sorted(stomp_body(frame) for frame in frames) == bodies
    # A trigger's frames are dispatched in order: jobs for the CONNECTED frame and the
    # heart-beats, which came before the messages, would be recorded by now.
    assert Job.objects.count() == 3


def test_stomp_heart_beats_keep_the_connection(e2e_workspace, rabbitmq, listener):
    """A "\\n" heartbeat every second answers the broker's heart-beat negotiation: the connection is never dropped."""
    trigger = make_stomp_trigger(
        e2e_workspace, rabbitmq, unique("idle"), heart_beat="1000,1000", heartbeat={"interval_secs": 1, "message": "\n"}
    )
    texts = wait_frames(trigger, connected_and_heart_beats(5), message="five heart-beats from the broker")
    assert sum(text.startswith("CONNECTED\n") for text in texts) == 1, texts


# Discord-style gateway


@pytest.fixture
def gateway():
    server = DiscordGateway(heartbeat_interval_ms=1000).start()
    yield server
    server.shutdown()


def test_discord_gateway_dispatches_become_jobs(e2e_workspace, gateway, celery_worker, listener):
    """With the op 0 filter each dispatch is a job and hello and heartbeat ACKs are none; every beat carries the last "s"."""
    make_trigger(
        e2e_workspace,
        gateway,
        filters=[{"key": "op", "value": 0}],
        initial_messages=[{"raw_message": '{"op": 2, "d": {"token": "t", "intents": 513, "properties": {}}}'}],
        heartbeat={"interval_secs": 1, "message": '{"op": 1, "d": {{state}}}', "state_field": "s"},
    )
    # The gateway closes the connection on any wrong or late beat, and records why.
    wait_for(
        lambda: gateway.failures_snapshot() or len(gateway.heartbeats()) >= 3,
        timeout=10,
        message="three heartbeats",
    )
    assert gateway.failures_snapshot() == [] and gateway.connects == 1
    dispatched = len(gateway.session(1).dispatched)
    events = [json.loads(job.args["msg"]) for job in wait_jobs(count=dispatched)]
    assert {event["op"] for event in events} == {0}
    sequence = sorted(event["s"] for event in events)
    assert sequence[:dispatched] == list(range(1, dispatched + 1)) and len(set(sequence)) == len(sequence)
