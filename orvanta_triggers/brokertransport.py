"""kombu's Redis transport, with one Redis client per channel.

kombu builds a new redis-py client for every command it sends outside its event loop
(each publish, each acknowledgement, each unacknowledged record), and redis-py's
client constructor fills a table of ~170 response callbacks each time: 250 µs of CPU
per command on our machines, a third of a listener's publish and an eighth of a
worker's main process at 300 frames/s. A client holds no connection of its own (it
borrows one from the channel's pool per command, and pipelines are still made per
call), so one per channel and pool serves every caller. celeryconfig selects it for
redis:// and rediss:// broker URLs; anything else keeps kombu's own choice.
"""

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _sync_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:
            return super()._create_client(asynchronous=True)
        client = self._sync_client
        # kombu replaces the pool after a fork or a lost connection: follow it.
        if client is None or client.connection_pool is not self.pool:
            client = self._sync_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
