"""Returns its frame as bytes (a binary frame's payload, a text frame's UTF-8): a binary result."""

import base64


def preprocessor(event):
    return {"payload": event["msg"], "msg_type": event["msg_type"]}


def main(payload: str, msg_type: str):
    return base64.b64decode(payload) if msg_type == "binary" else payload.encode()
