"""The monitor's publisher (orvanta_triggers.monitor.MonitorPublisher) against a real Redis."""

import redis

from orvanta_triggers.monitor import MonitorPublisher


def test_flushes_reuse_one_redis_connection(private_redis, settings):
    """A publisher's flushes share one connection to the channel layer's Redis (each
    flush used to open one, on an event loop of its own)."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "orvanta_triggers.channellayer.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": private_redis.url}]},
        }
    }
    server = redis.Redis.from_url(private_redis.url)
    publisher = MonitorPublisher()
    try:
        publisher.event("e2e", {"type": "status", "trigger_path": "f/x", "status": "connected"})
        publisher.flush()
        opened = server.info("stats")["total_connections_received"]
        for _ in range(5):
            publisher.event("e2e", {"type": "status", "trigger_path": "f/x", "status": "connected"})
            publisher.flush()
        assert server.info("stats")["total_connections_received"] == opened
    finally:
        publisher.stop()
        server.close()
