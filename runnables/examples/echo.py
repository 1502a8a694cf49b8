"""Returns the message it was given: with "Send runnable result" on, the server gets
its own message back."""


def main(msg: str):
    return msg
