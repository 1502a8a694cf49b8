"""The Redis broker transport with one client per channel, against the test Redis."""

import uuid

import pytest
from kombu import Connection
from kombu.simple import SimpleQueue

from config.celery import app
from orvanta_triggers import brokertransport, bus
from orvanta_triggers.celeryconfig import broker_transport
from orvanta_triggers.wire import RUN_RUNNABLE, RUN_TRIGGER_JOBS


@pytest.fixture
def channel(settings):
    with Connection(settings.CELERY_BROKER_URL, transport=brokertransport.Transport) as conn:
        yield conn.default_channel


@pytest.fixture
def queue(channel):
    queue = SimpleQueue(channel, f"test-brokertransport-{uuid.uuid4()}")
    yield queue
    queue.clear()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://cache.example:6380/1"])
def test_redis_urls_get_the_transport(url):
    """Redis broker URLs, plain or TLS, are served by the transport."""
    assert broker_transport(url) == "orvanta_triggers.brokertransport:Transport"


@pytest.mark.parametrize("url", ["sentinel://127.0.0.1:26379", "amqp://guest@127.0.0.1//", "", None])
def test_other_urls_keep_kombus_choice(url):
    """Any other broker URL is left to kombu's choice by scheme."""
    assert broker_transport(url) is None


def test_the_app_publishes_through_the_transport():
    """The project's Celery app uses the transport for its Redis broker."""
    with app.connection_for_write() as conn:
        assert isinstance(conn.transport, brokertransport.Transport)


def test_commands_share_one_client(channel):
    """Two commands outside the event loop borrow the same client."""
    with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
        assert first is second


def test_a_new_pool_gets_a_new_client(channel, queue):
    """After kombu replaces the channel's pool (a fork, a lost connection), commands go
    through a client of the new pool and still reach Redis."""
    with channel.conn_or_acquire() as before:
        pass
    channel._disconnect_pools()
    queue.put({"n": 1}, serializer="json")
    with channel.conn_or_acquire() as after:
        assert after is not before
        assert after.connection_pool is channel.pool
    assert queue.get(timeout=5).payload == {"n": 1}


def take(queue, task):
    """A message of `task` put on `queue`, then taken off it unacknowledged; its id."""
    message_id = str(uuid.uuid4())
    queue.put({"n": 1}, serializer="json", headers={"task": task, "id": message_id})
    message = queue.get(timeout=5)
    assert brokertransport.notes_receipts(message)
    return message_id, message


def test_a_trigger_jobs_message_taken_is_noted_received(channel, queue):
    """Taking a trigger-jobs message writes the listeners' receipt beside kombu's own
    unacknowledged record."""
    message_id, message = take(queue, RUN_TRIGGER_JOBS)
    assert bus.received_messages([message_id]) == {message_id}
    with channel.conn_or_acquire() as client:
        assert client.hexists(channel.unacked_key, message.delivery_tag)
    message.ack()


def test_other_messages_get_no_receipt(channel, queue):
    """Messages of other tasks are recorded by kombu alone."""
    message_id, message = take(queue, RUN_RUNNABLE)
    assert bus.received_messages([message_id]) == set()
    with channel.conn_or_acquire() as client:
        assert client.hexists(channel.unacked_key, message.delivery_tag)
    message.ack()
