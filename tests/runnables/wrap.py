"""A flow step: wraps a value in an object, with a prefix."""


def main(value, prefix: str = ""):
    return {"wrapped": f"{prefix}{value}"}
