"""Conformance runnable (script path `conformance_echo`): the echo the Autobahn cases
expect, a text message back as text and a binary one back as binary (a script that
returns bytes has them sent as a binary frame)."""

import base64


def preprocessor(event):
    # main alone would get the frame only; the frame's type is in the event.
    return {"msg": event["msg"], "binary": event["msg_type"] == "binary"}


def main(msg: str, binary: bool = False):
    return base64.b64decode(msg) if binary else msg
