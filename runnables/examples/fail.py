"""Always fails: shows how a failed job is recorded and what an error result looks like."""


def main(msg: str):
    raise RuntimeError(f"examples/fail always fails (got {len(msg)} characters)")
