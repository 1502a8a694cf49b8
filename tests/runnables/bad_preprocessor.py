"""A preprocessor that breaks its contract: it returns a list, not a dict of arguments."""


def preprocessor(event):
    return [event["msg"]]


def main(msg: str):
    return msg
