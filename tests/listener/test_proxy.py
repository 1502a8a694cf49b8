"""Trigger connections and test connection through a real HTTP proxy (tinyproxy, see
tests/proxyserver.py): CONNECT tunnels, TLS end to end, NO_PROXY, proxy refusals and
credentials, and the SSRF guard behind a proxy."""

import logging

import pytest

from orvanta_triggers.models import Job
from tests.listener.helpers import make_trigger, wait_connected, wait_jobs, wait_status
from tests.proxyserver import Tinyproxy
from tests.rawservers import RawServer, silent
from tests.support.ports import free_port
from tests.support.processes import start_listener

TEST_CONNECTION = "/api/w/acme/test_websocket_connection/"


@pytest.fixture
def proxy_factory():
    proxies = []

    def make(**options):
        proxies.append(Tinyproxy(**options).start())
        return proxies[-1]

    yield make
    for running in proxies:
        running.stop()


@pytest.fixture
def tinyproxy(proxy_factory):
    return proxy_factory()


def probe(api, url):
    return api.post(TEST_CONNECTION, {"url": url}, format="json").json()


def target(server):
    return f"127.0.0.1:{server.port}"


def test_trigger_connects_through_the_proxy_and_its_frames_become_jobs(
    e2e_workspace, ws_server, tinyproxy, celery_worker, listener, settings
):
    """A ws:// trigger with HTTP_PROXY set tunnels through the proxy; frames arrive and become jobs."""
    settings.ORVANTA_HTTP_PROXY = tinyproxy.url
    make_trigger(e2e_workspace, ws_server)
    wait_connected(ws_server)
    assert tinyproxy.connects() == [target(ws_server)]
    ws_server.send_all("through the tunnel")
    [job] = wait_jobs(count=1, status=Job.Status.SUCCESS)
    assert job.args == {"msg": "through the tunnel"}


def test_listener_process_takes_the_proxy_from_its_environment(e2e_workspace, ws_server, tinyproxy):
    """runlisteners reads http_proxy from its environment, the lower-case variable before HTTP_PROXY."""
    make_trigger(e2e_workspace, ws_server)
    unreachable = f"http://127.0.0.1:{free_port()}"
    process = start_listener("proxy-env", http_proxy=tinyproxy.url, HTTP_PROXY=unreachable)
    try:
        wait_connected(ws_server, timeout=20)
    finally:
        output = process.stop()
    assert tinyproxy.connects() == [target(ws_server)], output


def test_no_proxy_connects_directly(api, ws_server, tinyproxy, settings):
    """A target NO_PROXY names (here by IP range) is connected to without the proxy."""
    settings.ORVANTA_HTTP_PROXY = tinyproxy.url
    settings.ORVANTA_NO_PROXY = "example.org, 127.0.0.0/8"
    assert probe(api, ws_server.url)["ok"] is True
    assert ws_server.connects == 1 and tinyproxy.connects() == []


def test_wss_runs_tls_end_to_end_with_the_target_name(api, ws_server_factory, trusted_ca, tinyproxy, settings):
    """Through HTTPS_PROXY, TLS is with the target: SNI and certificate check for its name, not the proxy's."""
    settings.ORVANTA_HTTPS_PROXY = tinyproxy.url
    context = trusted_ca.server_context("localhost")
    names = []
    context.sni_callback = lambda tls, name, _: names.append(name)
    server = ws_server_factory(ssl_context=context)
    body = probe(api, f"wss://localhost:{server.port}/feed")
    assert body == {"ok": True, "error": None, "subprotocol": None}
    assert tinyproxy.connects() == [f"localhost:{server.port}"] and names == ["localhost"]


def test_wss_certificate_for_another_name_is_refused_through_the_proxy(
    api, ws_server_factory, trusted_ca, tinyproxy, settings
):
    """A target whose certificate names another host fails TLS, though the proxy tunnelled to it."""
    settings.ORVANTA_HTTPS_PROXY = tinyproxy.url
    server = ws_server_factory(ssl_context=trusted_ca.server_context("elsewhere.test"))
    body = probe(api, f"wss://localhost:{server.port}/feed")
    assert body["ok"] is False and "TLS failed" in body["error"]
    assert "certificate is not valid for 'localhost'" in body["error"]
    assert tinyproxy.connects() == [f"localhost:{server.port}"]


def test_proxy_refusing_connect_puts_a_clear_error_on_the_trigger(
    e2e_workspace, ws_server, proxy_factory, listener, settings
):
    """A proxy answering CONNECT with 403 leaves the trigger in error with the proxy's status."""
    refusing = proxy_factory(refuse_connect=True)
    settings.ORVANTA_HTTP_PROXY = refusing.url
    trigger = wait_status(make_trigger(e2e_workspace, ws_server), "error")
    assert trigger.error == (
        f"{ws_server.url}: proxy {refusing.url} refused CONNECT to {target(ws_server)} with HTTP 403 Access violation"
    )
    assert ws_server.connects == 0


def test_proxy_refusing_connect_is_reported_by_test_connection(api, ws_server, proxy_factory, settings):
    """Test connection reports the proxy's refusal with its HTTP status."""
    refusing = proxy_factory(refuse_connect=True)
    settings.ORVANTA_HTTP_PROXY = refusing.url
    body = probe(api, ws_server.url)
    assert body["ok"] is False and "refused CONNECT" in body["error"] and "HTTP 403" in body["error"]


def test_proxy_credentials_in_the_url_are_sent(api, ws_server, proxy_factory, settings):
    """userinfo in the proxy URL authenticates to a proxy that requires Basic credentials."""
    guarded = proxy_factory(credentials=("bob", "s3cret"))
    settings.ORVANTA_HTTP_PROXY = guarded.url_with("bob", "s3cret")
    assert probe(api, ws_server.url)["ok"] is True
    assert guarded.connects() == [target(ws_server)]


def test_proxy_wanting_credentials_is_reported_as_407(api, ws_server, proxy_factory, settings):
    """Without credentials, a proxy's 407 is reported with a hint on where credentials go."""
    guarded = proxy_factory(credentials=("bob", "s3cret"))
    settings.ORVANTA_HTTP_PROXY = guarded.url
    body = probe(api, ws_server.url)
    assert "HTTP 407" in body["error"] and "give credentials in the proxy URL" in body["error"]


def test_proxy_password_never_appears_in_errors_or_logs(
    e2e_workspace, ws_server, proxy_factory, listener, settings, caplog
):
    """A wrong proxy password is refused; the error and every log line show it redacted."""
    caplog.set_level(logging.DEBUG)
    guarded = proxy_factory(credentials=("bob", "s3cret"))
    settings.ORVANTA_HTTP_PROXY = guarded.url_with("bob", "wrong-pw")
    trigger = wait_status(make_trigger(e2e_workspace, ws_server), "error")
    assert f"proxy http://bob:***@127.0.0.1:{guarded.port} refused CONNECT" in trigger.error
    assert "wrong-pw" not in trigger.error and "wrong-pw" not in caplog.text
    assert "http://bob:***@" in caplog.text


def test_unreachable_proxy_is_a_clear_error(api, ws_server, settings):
    """A proxy nothing listens on is reported as unreachable, with the socket's reason."""
    settings.ORVANTA_HTTP_PROXY = f"http://127.0.0.1:{free_port()}"
    body = probe(api, ws_server.url)
    assert f"proxy {settings.ORVANTA_HTTP_PROXY} is unreachable (ConnectionRefusedError" in body["error"]


def test_silent_proxy_times_out(api, ws_server, settings):
    """A proxy that accepts the connection and never answers the CONNECT is an error after the connect timeout."""
    mute = RawServer(silent)
    try:
        settings.ORVANTA_HTTP_PROXY = f"http://127.0.0.1:{mute.port}"
        settings.ORVANTA_CONNECT_TIMEOUT_SECS = 0.5
        body = probe(api, ws_server.url)
    finally:
        mute.close()
    assert (
        body["error"] == f"{ws_server.url}: proxy http://127.0.0.1:{mute.port} did not answer the CONNECT within 0.5s"
    )


def test_ssrf_guard_refuses_a_loopback_target_behind_the_proxy(
    e2e_workspace, ws_server, tinyproxy, listener_factory, settings
):
    """With private URLs disallowed, a loopback target is refused before any CONNECT; the proxy's own address is fine."""
    trigger = make_trigger(e2e_workspace, ws_server)
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    settings.ORVANTA_HTTP_PROXY = tinyproxy.url
    listener_factory()
    trigger = wait_status(trigger, "error")
    assert "resolves to a private or internal address (127.0.0.1)" in trigger.error
    assert tinyproxy.connects() == [] and ws_server.connects == 0


def test_test_connection_refuses_a_loopback_target_behind_the_proxy(api, ws_server, tinyproxy, settings):
    """Test connection applies the same guard behind a proxy: a loopback target is refused, nothing tunnelled."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    settings.ORVANTA_HTTP_PROXY = tinyproxy.url
    body = probe(api, ws_server.url)
    assert "private or internal address" in body["error"] and tinyproxy.connects() == []


def test_a_name_that_does_not_resolve_here_is_left_to_the_proxy(api, tinyproxy, settings):
    """With private URLs disallowed, an unresolvable name goes to the proxy (its own loopback address allowed)."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    settings.ORVANTA_HTTP_PROXY = tinyproxy.url
    body = probe(api, "ws://no-such-host.invalid:8080/feed")
    # tinyproxy can't resolve it either, and says so with a 500.
    assert "refused CONNECT to no-such-host.invalid:8080 with HTTP 500" in body["error"]
    assert tinyproxy.connects() == ["no-such-host.invalid:8080"]
