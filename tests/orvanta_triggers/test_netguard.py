"""The SSRF guard's address rules and URL redaction."""

import pytest
from django.core.exceptions import ValidationError

from orvanta_triggers import netguard, services


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


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"])
def test_public_addresses_are_allowed(address):
    """Public unicast addresses pass."""
    assert not netguard.is_forbidden_address(address)


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
