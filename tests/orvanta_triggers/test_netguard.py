"""The SSRF guard's address rules and URL redaction."""

import pytest
from django.core.exceptions import ValidationError

from orvanta_triggers import netguard, services
from orvanta_triggers.client.connect import ConnectFailed, open_websocket


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fc00::1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_internal_addresses_are_forbidden(address):
    """Loopback, private, link-local (metadata), unique-local, mapped and multicast addresses are refused."""
    assert netguard.is_forbidden_address(address)


# Addresses that are not globally routable unicast, each with the range it stands for.
NOT_GLOBAL = [
    ("100.100.100.200", "shared address space 100.64.0.0/10 (a cloud metadata address)"),
    ("100.64.0.1", "shared address space 100.64.0.0/10"),
    ("192.88.99.1", "6to4 relay anycast 192.88.99.0/24"),
    ("192.0.0.8", "IETF protocol assignments 192.0.0.0/24"),
    ("192.0.2.1", "documentation 192.0.2.0/24"),
    ("198.18.0.1", "benchmarking 198.18.0.0/15"),
    ("203.0.113.7", "documentation 203.0.113.0/24"),
    ("240.0.0.1", "reserved 240.0.0.0/4"),
    ("255.255.255.255", "limited broadcast"),
    ("0.1.2.3", "this network 0.0.0.0/8"),
    ("fec0::1", "site-local fec0::/10"),
    ("2002:7f00:1::", "6to4 of loopback 127.0.0.1"),
    ("2002:a00:1::1", "6to4 of private 10.0.0.1"),
    ("64:ff9b::7f00:1", "NAT64 of loopback 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 of link-local 169.254.169.254"),
    ("64:ff9b:1::808:808", "local-use NAT64 64:ff9b:1::/48"),
    ("2001:0:808:808::80ff:fffe", "Teredo with client 127.0.0.1"),
    ("2001:0:7f00:1::f7f7:f7f7", "Teredo with server 127.0.0.1"),
    ("::ffff:100.100.100.200", "IPv4-mapped shared address space"),
    ("::127.0.0.1", "IPv4-compatible ::/96"),
    ("2001:db8::1", "documentation 2001:db8::/32"),
    ("3fff::1", "documentation 3fff::/20"),
    ("100::1", "discard-only 100::/64"),
    ("5f00::1", "segment routing 5f00::/16"),
    ("ff0e::1", "global-scope multicast"),
    ("4000::1", "unallocated (reserved) space"),
]

GLOBAL = [
    ("93.184.216.34", "public IPv4"),
    ("1.1.1.1", "public IPv4"),
    ("2606:2800:220:1:248:1893:25c8:1946", "public IPv6"),
    ("::ffff:8.8.8.8", "IPv4-mapped public"),
    ("64:ff9b::808:808", "NAT64 of public 8.8.8.8"),
    ("2002:808:808::1", "6to4 of public 8.8.8.8"),
    ("2001:0:808:808::f7f7:f7f7", "Teredo with public server and client 8.8.8.8"),
]


@pytest.mark.parametrize("address, what", NOT_GLOBAL)
def test_addresses_that_are_not_global_unicast_are_forbidden(address, what):
    """Every range that is not globally routable unicast is refused, embedded IPv4 judged as IPv4."""
    assert netguard.is_forbidden_address(address), what


@pytest.mark.parametrize("address, what", GLOBAL)
def test_public_addresses_are_allowed(address, what):
    """Globally routable unicast addresses pass, and so do IPv6 forms that embed one."""
    assert not netguard.is_forbidden_address(address), what


def literal_url(address):
    host = f"[{address}]" if ":" in address else address
    return f"ws://{host}/latest/meta-data/"


@pytest.mark.parametrize("address, what", NOT_GLOBAL)
def test_not_global_addresses_are_refused_at_save(workspace, settings, address, what):
    """A URL on any address that is not global unicast can't be saved (201 before)."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ValidationError) as error:
        services.create_trigger(
            workspace=workspace, path="f/x/y", url=literal_url(address), script_path="examples/echo"
        )
    assert f"private or internal address ({address})" in " ".join(error.value.message_dict["url"]), what


@pytest.mark.parametrize("address, what", NOT_GLOBAL)
def test_not_global_addresses_are_refused_at_connect(settings, address, what):
    """The listener's connect refuses them before opening any socket, whatever was saved."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ConnectFailed) as failure:
        open_websocket(literal_url(address), headers={}, subprotocols=[])
    assert f"private or internal address ({address})" in failure.value.reason and failure.value.permanent, what


@pytest.mark.parametrize("address, what", NOT_GLOBAL)
def test_not_global_addresses_are_refused_by_test_connection(api, settings, address, what):
    """Test connection refuses them too, saying why."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    body = api.post("/api/w/acme/test_websocket_connection/", {"url": literal_url(address)}, format="json").json()
    assert not body["ok"] and f"private or internal address ({address})" in body["error"], what


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:9000/feed",
        "ws://localhost/feed",
        "wss://169.254.169.254/latest",
        "ws://10.0.0.5/x",
        "ws://[::1]:8000/",
    ],
)
def test_private_urls_are_refused_at_save_when_not_allowed(workspace, settings, url):
    """With ORVANTA_ALLOW_PRIVATE_URLS off, URLs resolving to internal addresses can't be saved."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ValidationError) as error:
        services.create_trigger(workspace=workspace, path="f/x/y", url=url, script_path="examples/echo")
    assert "private or internal address" in " ".join(error.value.message_dict["url"])


def test_unresolvable_host_is_refused_at_save_when_private_urls_are_not_allowed(workspace, settings):
    """A host that does not resolve can't be vetted, so it is refused with that reason."""
    settings.ORVANTA_ALLOW_PRIVATE_URLS = False
    with pytest.raises(ValidationError) as error:
        services.create_trigger(
            workspace=workspace, path="f/x/y", url="ws://no-such-host.invalid/", script_path="examples/echo"
        )
    assert "does not resolve" in " ".join(error.value.message_dict["url"])


def test_redact_url_hides_query_values_and_passwords():
    """Query values and userinfo passwords are replaced; the rest of the URL stays readable."""
    assert netguard.redact_url("wss://bob:pw@example.org:8443/feed?token=s3cret&x=1#frag") == (
        "wss://bob:***@example.org:8443/feed?token=***&x=***"
    )


def test_redact_url_leaves_plain_urls_alone():
    """A URL without secrets is shown as it is."""
    assert netguard.redact_url("ws://example.org/feed") == "ws://example.org/feed"
