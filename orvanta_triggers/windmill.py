"""Windmill's WebSocket trigger JSON, taken as-is: the few fields whose shape differs
from ours are translated; fields we have no use for are ignored by the API. Its
`mode` (enabled, disabled, suspended) is ours too."""

WINDMILL_RETRY_KEYS = {"constant", "exponential"}


class WindmillShapeError(ValueError):
    def __init__(self, errors):
        super().__init__(errors)
        self.errors = errors


def _retry(retry):
    """Windmill: {"constant": {attempts, seconds}} or {"exponential": {attempts,
    multiplier, seconds, random_factor}} where `attempts` counts retries and the n-th
    exponential delay is multiplier * seconds**n. Ours counts every attempt and the
    n-th delay is delay_secs * multiplier**(n-1), so the same schedule is
    delay_secs = multiplier * seconds and multiplier = seconds."""
    if set(retry) == {"constant", "exponential"} and retry["constant"] and retry["exponential"]:
        raise WindmillShapeError(
            {"retry": ["a retry with both constant and exponential parts can't be imported; keep one"]}
        )
    constant, exponential = retry.get("constant"), retry.get("exponential")
    try:
        if exponential:
            seconds = max(exponential.get("seconds", 1), 1)
            return {
                "max_attempts": exponential["attempts"] + 1,
                "delay_secs": exponential.get("multiplier", 1) * seconds,
                "multiplier": seconds,
            }
        if constant:
            return {"max_attempts": constant["attempts"] + 1, "delay_secs": constant.get("seconds", 0), "multiplier": 1}
    except (KeyError, TypeError, AttributeError) as exc:
        raise WindmillShapeError({"retry": [f"not a Windmill retry ({exc})"]}) from exc
    return None


def from_windmill(data):
    """`data` with Windmill-only shapes translated (a new dict; `data` is untouched)."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    retry = data.get("retry")
    if isinstance(retry, dict) and retry and set(retry) <= WINDMILL_RETRY_KEYS:
        data["retry"] = _retry(retry)
    return data
