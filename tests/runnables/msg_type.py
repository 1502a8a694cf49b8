"""Echoes the message and its type, through a preprocessor."""


def preprocessor(event):
    return {"msg": event["msg"], "msg_type": event["msg_type"]}


def main(msg: str, msg_type: str):
    return {"msg": msg, "msg_type": msg_type}
