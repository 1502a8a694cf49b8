import os
import shutil
import threading

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.worker import state as worker_state
from django.conf import settings
from django.db import connection
from django.test.utils import override_settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from config.celery import app as celery_app
from orvanta_triggers import bus, services
from orvanta_triggers.models import Membership
from tests import brokers
from tests.support.pgserver import PrivatePostgres
from tests.support.redisserver import PrivateRedis
from tests.support.wsserver import WsServer
from tests.tlscerts import CertificateAuthority

pytest_plugins = ["tests.support.exitguard"]


def _delete_own_keys():
    client = redis.Redis.from_url(settings.REDIS_URL)
    for key in client.scan_iter(match=f"{settings.ORVANTA_REDIS_PREFIX}*", count=1000):
        client.delete(key)


@pytest.fixture(scope="session", autouse=True)
def clean_redis():
    """This test process's Redis keys (prefix, job queue) start and end empty."""
    _delete_own_keys()
    bus.reset_client()
    yield
    _delete_own_keys()


@pytest.fixture(scope="session", autouse=True)
def no_stray_database_sessions(django_db_setup, django_db_blocker):
    """At the end, sessions that threads of this process left open on the PostgreSQL test
    database (a worker's pool threads, listeners) end: otherwise dropping it waits 5 s
    for them and fails, leaving the database behind."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session", autouse=True)
def flush_postgresql_by_delete():
    """Transactional tests empty the PostgreSQL test database with DELETE, not TRUNCATE:
    the same end state (sequences are not reset either way; foreign keys are checked at
    the flush's commit), and ~0.01 s instead of ~0.1 s per test on tables this small."""
    if connection.vendor != "postgresql":
        yield
        return
    operations = type(connection.ops)
    truncate = operations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or allow_cascade:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return [f"{style.SQL_KEYWORD('DELETE FROM')} {style.SQL_FIELD(self.quote_name(table))};" for table in tables]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(operations, "sql_flush", sql_flush)
        yield


@pytest.fixture(scope="session", autouse=True)
def no_machine_proxies():
    """The machine's proxy variables never reach a test: none are in force here (a test
    sets the settings it needs), and processes a test starts get only the test's own
    (tests/processes.py)."""
    with override_settings(ORVANTA_HTTPS_PROXY="", ORVANTA_HTTP_PROXY="", ORVANTA_NO_PROXY=""):
        yield


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user(username="alice", password="pw")


@pytest.fixture
def workspace(db, user):
    return services.create_workspace(slug="acme", owner=user)


def api_client_for(user):
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user, workspace):
    """A token-authenticated client of the workspace's admin."""
    return api_client_for(user)


@pytest.fixture
def member_client(workspace, django_user_model):
    """member_client(role) -> API client of a new member with that role."""

    def make(role):
        member = django_user_model.objects.create_user(username=f"member-{role}", password="pw")
        services.set_membership(workspace=workspace, user=member, role=role)
        return api_client_for(member)

    return make


@pytest.fixture
def ws_server():
    server = WsServer().start()
    yield server
    server.shutdown()


@pytest.fixture
def ws_server_factory():
    servers = []

    def make(**kwargs):
        server = WsServer(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="module")
def private_postgres():
    """A PostgreSQL server of this module's own (tests/pgserver.py) that its tests may
    restart or stop; deleted afterwards, whatever happened."""
    server = PrivatePostgres()
    try:
        yield server.start()
    finally:
        server.destroy()


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker (threads) consuming the test broker's two queues, as
    `celery -A config worker` does: jobs, and the runnables callers wait for."""
    with start_worker(
        celery_app,
        pool="threads",
        concurrency=2,
        perform_ping_check=False,
        shutdown_timeout=10,
        queues=[settings.CELERY_TASK_DEFAULT_QUEUE, settings.ORVANTA_RUNNABLES_QUEUE],
    ) as worker:
        yield worker
        # What start_worker's exit does, and a wake-up for the worker's event loop, which
        # would otherwise notice only at its next poll (up to the BRPOP timeout).
        worker_state.should_terminate = 0
        worker.hub.call_soon(lambda: None)


@pytest.fixture
def listener_factory(transactional_db):
    """start(listener_id) -> a real listener (the runlisteners process object) on a
    background thread, built with the settings in force when it is called."""
    from listener.supervisor import Supervisor

    running = []

    def start(listener_id="test-listener"):
        stop_event = threading.Event()
        supervisor = Supervisor(celery_app=celery_app, stop_event=stop_event, listener_id=listener_id)
        thread = threading.Thread(target=supervisor.run, daemon=True)
        thread.start()
        running.append((stop_event, thread))
        return supervisor

    yield start
    for stop_event, thread in running:
        stop_event.set()
    for _, thread in running:
        thread.join(10)
        assert not thread.is_alive(), "listener did not stop within 10s"


@pytest.fixture
def listener(listener_factory):
    return listener_factory()


@pytest.fixture
def e2e_workspace(transactional_db, django_user_model):
    owner = django_user_model.objects.create_user(username="owner", password="pw")
    return services.create_workspace(slug="e2e", owner=owner)


ROLES = Membership.Role


@pytest.fixture
def owner_api(e2e_workspace):
    """A token-authenticated API client of the e2e workspace's owner."""
    return api_client_for(e2e_workspace.memberships.get().user)


@pytest.fixture
def private_redis():
    """A redis-server of the test's own, which it may stop and start."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
def trusted_ca(monkeypatch):
    """A CA of the test's own that TLS clients in this process trust (OpenSSL's
    SSL_CERT_FILE, read by ssl.create_default_context)."""
    authority = CertificateAuthority()
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.cert_path))
    yield authority
    shutil.rmtree(authority.dir, ignore_errors=True)


def _require(program, package):
    if not os.access(program, os.X_OK):
        pytest.fail(f"{program} is not installed (apt-get install {package}; .ci/run installs it)")


@pytest.fixture(scope="session")
def mosquitto():
    """A Mosquitto of the session's own (tests/brokers.py), started by the first test
    that needs it: MQTT over WebSocket at `url`, publish() over plain MQTT."""
    _require(brokers.MOSQUITTO, "mosquitto")
    broker = brokers.PrivateMosquitto()
    try:
        yield broker.start()
    finally:
        broker.destroy()


@pytest.fixture(scope="session")
def rabbitmq_launched():
    """A RabbitMQ node of the session's own (tests/brokers.py), still booting: it takes
    seconds of CPU, so a module may launch it ahead of the first test that needs it."""
    _require(brokers.RABBITMQ_SERVER, "rabbitmq-server")
    broker = brokers.PrivateRabbitMQ()
    try:
        yield broker.launch()
    finally:
        broker.destroy()


@pytest.fixture(scope="session")
def rabbitmq(rabbitmq_launched):
    """That node, ready: STOMP over WebSocket at `url`, send() over plain STOMP."""
    return rabbitmq_launched.wait_ready()
