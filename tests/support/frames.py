"""WebSocket frames and the upgrade by hand (RFC 6455), for servers that must do what
a library would refuse to (tests' misbehaving servers) or cost less than one (the
bench's raw servers)."""

import base64
import hashlib
import struct

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True):
    """An unmasked (server) frame."""
    head = bytes([(0x80 if fin else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([size])
    elif size < 65536:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


def unmask(payload, mask):
    # One XOR of two big integers: a byte-by-byte loop costs the bench's servers more
    # than what they measure.
    if not payload:
        return payload
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def read_frame(data):
    """(opcode, payload unmasked, bytes it takes) of the frame `data` starts with; None
    while the frame is incomplete."""
    if len(data) < 2:
        return None
    opcode, size, offset = data[0] & 0x0F, data[1] & 0x7F, 2
    if size == 126:
        if len(data) < 4:
            return None
        size, offset = struct.unpack("!H", data[2:4])[0], 4
    elif size == 127:
        if len(data) < 10:
            return None
        size, offset = struct.unpack("!Q", data[2:10])[0], 10
    mask = None
    if data[1] & 0x80:
        mask, offset = data[offset : offset + 4], offset + 4
    if len(data) < offset + size:
        return None
    payload = bytes(data[offset : offset + size])
    return opcode, unmask(payload, mask) if mask else payload, offset + size


def read_upgrade(data):
    """(request path, the 101 answer, the bytes after the request) once `data` holds a
    whole upgrade request; None before."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    key = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    answer = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()
    return lines[0].split(" ")[1], answer, rest
