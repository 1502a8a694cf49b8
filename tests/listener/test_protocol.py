"""RFC 6455 from the client's side: control frames, fragmentation and closing
handshakes against servers that break the rules (and one that keeps them)."""

import struct

from orvanta_triggers.models import WebSocketTrigger
from tests.listener.helpers import make_trigger, wait_jobs
from tests.rawservers import upgrade_then
from tests.support.frames import frame
from tests.support.wsserver import wait_for


def trigger_error(trigger):
    return WebSocketTrigger.objects.get(pk=trigger.pk).error or ""


def wait_close_code(server, code):
    wait_for(lambda: code in server.close_codes(), timeout=5, message=f"a {code} close frame")


def test_a_ping_over_125_bytes_is_a_protocol_error(e2e_workspace, raw_server, listener):
    """A 126-byte ping is answered with close 1002, never with a pong."""
    server = raw_server(upgrade_then(frame(0x9, b"p" * 126)))
    make_trigger(e2e_workspace, server)
    wait_close_code(server, 1002)
    assert not [p for op, p in server.client_frames() if op == 0xA]


def test_a_control_frame_announcing_a_huge_payload_is_refused_unread(e2e_workspace, raw_server, listener):
    """A ping announcing 2**40 bytes fails the connection with 1002 at its header."""
    server = raw_server(upgrade_then(bytes([0x89, 127]) + struct.pack("!Q", 2**40)))
    trigger = make_trigger(e2e_workspace, server)
    wait_close_code(server, 1002)
    wait_for(lambda: "control frame of 1099511627776 bytes" in trigger_error(trigger), timeout=5, message="the reason")


def test_a_fragmented_ping_is_a_protocol_error(e2e_workspace, raw_server, listener):
    """A control frame without FIN is answered with close 1002."""
    server = raw_server(upgrade_then(frame(0x9, b"ping", fin=False)))
    make_trigger(e2e_workspace, server)
    wait_close_code(server, 1002)


def test_a_close_reason_that_is_not_utf8_is_answered_with_1007(e2e_workspace, raw_server, listener):
    """A close frame whose reason is invalid UTF-8 gets 1007 back, not 1000."""
    server = raw_server(
        upgrade_then(frame(0x8, struct.pack("!H", 1000) + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
    )
    trigger = make_trigger(e2e_workspace, server)
    wait_close_code(server, 1007)
    wait_for(lambda: "not UTF-8" in trigger_error(trigger), timeout=5, message="the recorded reason")


def test_a_valid_close_code_is_echoed_and_its_reason_recorded(e2e_workspace, raw_server, listener):
    """A close with code 3000 and a reason is answered with 3000; the reason is recorded."""
    server = raw_server(upgrade_then(frame(0x8, struct.pack("!H", 3000) + "à bientôt".encode())))
    trigger = make_trigger(e2e_workspace, server)
    wait_close_code(server, 3000)
    wait_for(lambda: "code 3000: à bientôt" in trigger_error(trigger), timeout=5, message="the recorded reason")


def test_a_continuation_with_no_message_is_a_protocol_error(e2e_workspace, raw_server, listener):
    """A continuation frame that continues nothing is answered with close 1002."""
    server = raw_server(upgrade_then(frame(0x0, b"orphan")))
    make_trigger(e2e_workspace, server)
    wait_close_code(server, 1002)


def test_a_new_message_inside_a_fragmented_one_is_a_protocol_error(e2e_workspace, raw_server, listener):
    """A text frame while a fragmented message is unfinished is answered with close 1002."""
    server = raw_server(upgrade_then(frame(0x1, b"first", fin=False), frame(0x1, b"second")))
    make_trigger(e2e_workspace, server)
    wait_close_code(server, 1002)


def test_a_masked_frame_from_the_server_is_a_protocol_error(e2e_workspace, raw_server, listener):
    """A server frame with the mask bit set is answered with close 1002."""
    server = raw_server(upgrade_then(bytes([0x81, 0x80 | 4]) + b"\x00\x00\x00\x00" + b"mask"))
    make_trigger(e2e_workspace, server)
    wait_close_code(server, 1002)


def test_a_reserved_opcode_is_a_protocol_error(e2e_workspace, raw_server, listener):
    """A frame with reserved opcode 0x3 is answered with close 1002."""
    server = raw_server(upgrade_then(frame(0x3, b"what")))
    make_trigger(e2e_workspace, server)
    wait_close_code(server, 1002)


def test_a_ping_between_fragments_is_answered_and_the_message_assembled(
    e2e_workspace, raw_server, celery_worker, listener
):
    """A ping inside a fragmented message gets its pong; the message still becomes one job."""
    server = raw_server(
        upgrade_then(frame(0x1, b"hel", fin=False), frame(0x9, b"are you there"), frame(0x0, b"lo", fin=True))
    )
    make_trigger(e2e_workspace, server)
    [job] = wait_jobs(count=1, status="success")
    assert job.args == {"msg": "hello"}
    assert (0xA, b"are you there") in server.client_frames()
