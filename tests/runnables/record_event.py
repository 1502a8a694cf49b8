"""Records the event its preprocessor gets and the arguments main gets."""

EVENTS = []
CALLS = []


def preprocessor(event):
    EVENTS.append(event)
    return {"text": event["msg"], "kind": event["kind"]}


def main(text: str, kind: str):
    CALLS.append({"text": text, "kind": kind})
    return {"text": text, "kind": kind}
