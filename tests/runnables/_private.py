"""A private module in a runnables package: never a script, though it defines main()."""


def main(msg: str):
    return msg
