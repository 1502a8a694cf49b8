"""A script at a Windmill-style path (f/<folder>/<name>): a Windmill trigger file that
names it imports as is (tests/orvanta_triggers/management/test_importtriggers.py)."""


def main(msg: str):
    return msg
