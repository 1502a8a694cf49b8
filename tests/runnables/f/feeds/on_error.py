"""An error handler at a Windmill-style path."""


def main(error=None, **context):
    return error
