"""Which proxy a trigger's URL goes through (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), how a
proxy URL is read, and what the SSRF guard checks at save behind a proxy. No network."""

import json
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError

from orvanta_triggers import proxies, services


@pytest.fixture
def proxy_settings(settings):
    settings.ORVANTA_HTTPS_PROXY = "http://secure-proxy:3128"
    settings.ORVANTA_HTTP_PROXY = "http://plain-proxy:8080"
    return settings


def test_wss_goes_through_https_proxy(proxy_settings):
    """A wss:// target uses HTTPS_PROXY."""
    assert proxies.proxy_for("wss", "example.org", 443).host == "secure-proxy"


def test_ws_goes_through_http_proxy(proxy_settings):
    """A ws:// target uses HTTP_PROXY."""
    assert proxies.proxy_for("ws", "example.org", 80).host == "plain-proxy"


def test_no_proxy_configured_means_a_direct_connection(settings):
    """With the variable for the scheme empty, no proxy applies."""
    settings.ORVANTA_HTTP_PROXY = "http://plain-proxy:8080"
    assert proxies.proxy_for("wss", "example.org", 443) is None


@pytest.mark.parametrize(
    "no_proxy, host, port, exempt",
    [
        ("*", "example.org", 443, True),
        ("example.org", "example.org", 443, True),
        ("example.org", "feed.example.org", 443, True),
        ("example.org", "badexample.org", 443, False),
        (".example.org", "example.org", 443, True),
        ("*.example.org", "feed.example.org", 443, True),
        ("EXAMPLE.org.", "Feed.Example.Org", 443, True),
        ("other.net, example.org", "example.org", 443, True),
        ("other.net example.org", "example.org", 443, True),
        ("example.org:8443", "example.org", 8443, True),
        ("example.org:8443", "example.org", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("192.0.2.7", "192.0.2.7", 80, True),
        ("10.0.0.0/8", "internal.example.org", 443, False),
        ("::1", "::1", 443, True),
        ("fd00::/8", "fd12::5", 443, True),
        ("[::1]:8080", "::1", 8080, True),
        ("[::1]:8080", "::1", 80, False),
        ("", "example.org", 443, False),
    ],
)
def test_no_proxy_entries_exempt_the_hosts_they_name(no_proxy, host, port, exempt):
    """NO_PROXY: `*`, names with their subdomains, IPs and CIDR ranges for IP hosts, optional ports."""
    assert proxies.bypasses(no_proxy, host, port) is exempt


def test_no_proxy_exempts_a_target_from_the_proxy(proxy_settings):
    """A target NO_PROXY names is connected to directly."""
    proxy_settings.ORVANTA_NO_PROXY = "localhost,.example.org"
    assert proxies.proxy_for("wss", "feed.example.org", 443) is None


def test_a_bare_host_and_port_is_an_http_proxy():
    """`host:port` without a scheme is read as http://host:port, as curl and requests do."""
    parsed = proxies.parse_proxy_url("HTTPS_PROXY", "proxy.corp:3128")
    assert (parsed.host, parsed.port, parsed.authorization) == ("proxy.corp", 3128, None)


def test_a_proxy_url_without_port_uses_80():
    """An http:// proxy URL without a port means port 80."""
    assert proxies.parse_proxy_url("HTTP_PROXY", "http://proxy.corp").port == 80


def test_proxy_url_credentials_become_basic_authorization_and_are_redacted():
    """userinfo (percent-decoded) becomes Proxy-Authorization: Basic; the shown URL hides the password."""
    parsed = proxies.parse_proxy_url("HTTPS_PROXY", "http://bob:s%40cret@proxy.corp:3128")
    assert parsed.authorization == "Basic Ym9iOnNAY3JldA=="  # base64 of bob:s@cret
    assert parsed.shown == "http://bob:***@proxy.corp:3128"


def test_an_unsupported_proxy_scheme_is_a_permanent_error_without_the_password():
    """A socks or https:// proxy is refused clearly and for good, its password redacted."""
    with pytest.raises(proxies.ProxyFailed) as failure:
        proxies.parse_proxy_url("HTTPS_PROXY", "socks5://bob:hunter2@proxy.corp:1080")
    assert failure.value.permanent
    assert failure.value.reason == (
        "HTTPS_PROXY socks5://bob:***@proxy.corp:1080: only http:// proxies are supported, not socks5://"
    )


def read_proxy_settings(env):
    """The proxy settings config/settings.py makes of `env`, in a fresh interpreter."""
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps([settings.ORVANTA_HTTPS_PROXY, settings.ORVANTA_HTTP_PROXY, settings.ORVANTA_NO_PROXY]))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        cwd=django_settings.BASE_DIR,
        env={
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DJANGO_SECRET_KEY": "x" * 50,
            "PATH": "/usr/bin:/bin",
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return json.loads(output)


def test_settings_read_the_upper_case_variables():
    """HTTPS_PROXY, HTTP_PROXY and NO_PROXY reach the settings."""
    env = {"HTTPS_PROXY": "http://a:1", "HTTP_PROXY": "http://b:2", "NO_PROXY": "example.org"}
    assert read_proxy_settings(env) == ["http://a:1", "http://b:2", "example.org"]


def test_settings_prefer_the_lower_case_variables_even_empty():
    """A lower-case variable wins over its upper-case one, and an empty one turns it off."""
    env = {
        "https_proxy": "http://lower:1",
        "HTTPS_PROXY": "http://upper:1",
        "http_proxy": "",
        "HTTP_PROXY": "http://b:2",
    }
    assert read_proxy_settings(env) == ["http://lower:1", "", ""]


@pytest.fixture
def guarded(proxy_settings):
    """Private URLs disallowed, and proxies for both schemes."""
    proxy_settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    return proxy_settings


def save_error(workspace, url):
    with pytest.raises(ValidationError) as error:
        services.create_trigger(workspace=workspace, path="f/x/y", url=url, script_path="examples/echo")
    return " ".join(error.value.message_dict["url"])


def test_a_name_only_the_proxy_resolves_can_be_saved(workspace, guarded):
    """Behind a proxy, a host that does not resolve here is the proxy's to resolve: accepted at save."""
    trigger = services.create_trigger(
        workspace=workspace, path="f/x/y", url="wss://no-such-host.invalid/feed", script_path="examples/echo"
    )
    assert trigger.url == "wss://no-such-host.invalid/feed"


@pytest.mark.parametrize("url", ["ws://127.0.0.1:9000/", "wss://[::1]/", "wss://169.254.169.254/", "ws://10.1.2.3/"])
def test_internal_targets_are_refused_at_save_behind_a_proxy(workspace, guarded, url):
    """IP literals and names resolving here to internal addresses are still refused behind a proxy."""
    assert "private or internal address" in save_error(workspace, url)


@pytest.mark.parametrize("url", ["ws://localhost/", "wss://feed.localhost/"])
def test_loopback_names_are_refused_behind_a_proxy(workspace, guarded, url):
    """localhost and *.localhost (RFC 6761) are refused whatever this machine's resolver says of them."""
    assert "is a loopback name" in save_error(workspace, url)
