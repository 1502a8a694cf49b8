"""The private PostgreSQL server (tests/support/pgserver.py): it answers on its own port,
its URL works as the product's DATABASE_URL, a restart drops open connections, a
stop/start keeps the data, and destroy() leaves nothing behind."""

import subprocess
import sys

import psycopg
import pytest
from django.conf import settings

from tests.support.pgserver import PrivatePostgres
from tests.support.processes import process_env


def connect(url):
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def test_connection_works(private_postgres):
    """A psycopg connection to the server's URL runs queries on the private port."""
    with connect(private_postgres.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SHOW port").fetchone() == (str(private_postgres.port),)


def test_url_works_as_database_url(private_postgres):
    """The product's migrations run on a created database given as DATABASE_URL."""
    url = private_postgres.create_database("orvanta_migrated")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=settings.BASE_DIR,
        env=process_env(DATABASE_URL=url),
        capture_output=True,
        check=True,
        timeout=60,
    )
    with connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0] > 0


def test_restart_breaks_open_connections(private_postgres):
    """restart() drops an open connection; a new one works right after."""
    with connect(private_postgres.url()) as conn:
        private_postgres.restart()
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    with connect(private_postgres.url()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_stop_and_start_keep_data(private_postgres):
    """While stopped the server refuses connections; started again, it still has the table."""
    url = private_postgres.create_database("orvanta_kept")
    with connect(url) as conn:
        conn.execute("CREATE TABLE kept (value text)")
        conn.execute("INSERT INTO kept VALUES ('before the stop')")
    private_postgres.stop()
    assert not private_postgres.is_running()
    with pytest.raises(psycopg.OperationalError):
        connect(url)
    private_postgres.start()
    with connect(url) as conn:
        assert conn.execute("SELECT value FROM kept").fetchall() == [("before the stop",)]


def test_destroy_removes_everything():
    """destroy() stops a running server and deletes its directory."""
    server = PrivatePostgres().start()
    server.destroy()
    assert not server.dir.exists()
    with pytest.raises(psycopg.OperationalError):
        connect(server.url())
