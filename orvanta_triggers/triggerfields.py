"""Checks of a trigger's fields, one at a time: URL (ws:// or a runnable), filters,
initial messages, heartbeat, capture and resume, retry, headers, subprotocols. Each
returns a dict of field name -> list of messages; an empty dict means valid.
"""

import base64
import binascii
import json
import re
from urllib.parse import urlsplit

from orvanta_triggers import conf, proxies
from orvanta_triggers import filters as filter_checks
from orvanta_triggers.fieldchecks import TOO_DEEP, Errors, is_json_object, is_number, json_depth_error, runnable_error

HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Headers the WebSocket handshake sets itself.
RESERVED_HEADERS = {
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
}
RUNNABLE_URL_RE = re.compile(r"^\$(script|flow):(.+)\Z")
CAPTURE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
# {{name}} in heartbeat and resume messages: a captured value, as JSON.
PLACEHOLDER_RE = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]{0,63})\}\}")
MAX_CAPTURES = 20
MAX_CAPTURE_PATH = 500
MAX_RESUME_MESSAGE = 65536

# Limits, each answered with a 400 that names it (README, "Security").
MAX_INITIAL_MESSAGES = 100
MAX_INITIAL_MESSAGE_BYTES = 65536
TOO_LARGE = f"larger than {MAX_INITIAL_MESSAGE_BYTES} bytes (the limit for an initial message)"


def url_errors(url, workspace_id, url_runnable_args):
    """Messages for `url` (and for `url_runnable_args` when it names a runnable)."""
    errors = Errors()
    if not isinstance(url, str) or not url.strip():
        errors.add("url", "a URL is required")
        return errors
    if url.startswith("$"):
        match = RUNNABLE_URL_RE.match(url)
        if not match:
            errors.add("url", "a runnable URL is $script:<path> or $flow:<path>")
        else:
            message = runnable_error(workspace_id, match.group(2), match.group(1) == "flow")
            if message:
                errors.add("url", message)
        if not is_json_object(url_runnable_args):
            errors.add("url_runnable_args", "must be a JSON object")
        return errors
    message = ws_url_error(url)
    if message:
        errors.add("url", message)
    return errors


def ws_url_error(url):
    """Why `url` is not a usable ws:// or wss:// URL, or None."""
    if len(url) > 2048:
        return "at most 2048 characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("ws", "wss"):
        return f"the scheme must be ws or wss, not '{parts.scheme or '(none)'}'"
    if not parts.hostname:
        return "the URL has no host"
    if any(c.isspace() for c in url):
        return "the URL contains white space"
    if not conf.allow_private_urls():
        # Behind a proxy the guard sees less, and a name only the proxy resolves is allowed.
        reason = proxies.forbidden_target_reason(
            parts.scheme, parts.hostname, port or (443 if parts.scheme == "wss" else 80)
        )
        if reason:
            return reason
    return None


def filters_errors(filters, filter_logic):
    errors = Errors()
    for message in filter_checks.check(filters):
        errors.add("filters", message)
    if filter_logic not in ("and", "or"):
        errors.add("filter_logic", "must be 'and' or 'or'")
    return errors


def initial_messages_errors(initial_messages, workspace_id):
    errors = Errors()
    if not isinstance(initial_messages, list):
        errors.add("initial_messages", "must be a list")
        return errors
    if len(initial_messages) > MAX_INITIAL_MESSAGES:
        errors.add("initial_messages", f"at most {MAX_INITIAL_MESSAGES} initial messages")
        return errors
    for index, item in enumerate(initial_messages):
        prefix = f"message {index}"
        kinds = ("raw_message", "binary_message", "runnable_result")
        if not is_json_object(item) or len(item) != 1 or next(iter(item)) not in kinds:
            errors.add(
                "initial_messages",
                f'{prefix}: must be {{"raw_message": ...}}, {{"binary_message": <base64>}} or {{"runnable_result": ...}}',
            )
            continue
        if "binary_message" in item:
            message = _base64_error(item["binary_message"])
            if message:
                errors.add("initial_messages", f"{prefix}: binary_message {message}")
            elif len(base64.b64decode(item["binary_message"])) > MAX_INITIAL_MESSAGE_BYTES:
                errors.add("initial_messages", f"{prefix}: {TOO_LARGE}")
            continue
        if "raw_message" in item:
            raw = item["raw_message"]
            if not isinstance(raw, str):
                errors.add("initial_messages", f"{prefix}: raw_message must be a string of JSON text")
                continue
            if len(raw.encode("utf-8", "surrogatepass")) > MAX_INITIAL_MESSAGE_BYTES:
                errors.add("initial_messages", f"{prefix}: {TOO_LARGE}")
                continue
            if filter_checks.too_deep_to_parse(raw):
                message = TOO_DEEP
            else:
                try:
                    message = json_depth_error(json.loads(raw))
                except ValueError as exc:
                    message = f"is not valid JSON ({exc})"
            if message:
                errors.add("initial_messages", f"{prefix}: raw_message {message}")
            continue
        runnable = item["runnable_result"]
        if not is_json_object(runnable) or not set(runnable) <= {"path", "args", "is_flow"} or "path" not in runnable:
            errors.add("initial_messages", f'{prefix}: runnable_result must be {{"path", "args"?, "is_flow"?}}')
            continue
        if not is_json_object(runnable.get("args", {})):
            errors.add("initial_messages", f"{prefix}: args must be a JSON object")
        if not isinstance(runnable.get("is_flow", False), bool):
            errors.add("initial_messages", f"{prefix}: is_flow must be true or false")
            continue
        message = runnable_error(workspace_id, runnable["path"], runnable.get("is_flow", False))
        if message:
            errors.add("initial_messages", f"{prefix}: {message}")
    return errors


def _base64_error(value):
    """Why `value` is not non-empty standard base64 text, or None."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string of base64"
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        return f"is not valid base64 ({exc})"
    return None


def heartbeat_errors(heartbeat):
    errors = Errors()
    if heartbeat is None:
        return errors
    shape = 'must be null or {"interval_secs", "message" or "binary_message", "state_field"?}'
    if not is_json_object(heartbeat) or not set(heartbeat) <= {
        "interval_secs",
        "message",
        "binary_message",
        "state_field",
    }:
        errors.add("heartbeat", shape)
        return errors
    interval = heartbeat.get("interval_secs")
    if not is_number(interval) or interval < 1:
        errors.add("heartbeat", "interval_secs must be a number >= 1")
    if ("message" in heartbeat) == ("binary_message" in heartbeat):
        errors.add("heartbeat", "needs exactly one of message (text) and binary_message (base64)")
    elif "binary_message" in heartbeat:
        message = _base64_error(heartbeat["binary_message"])
        if message:
            errors.add("heartbeat", f"binary_message {message}")
    elif not isinstance(heartbeat["message"], str) or not heartbeat["message"]:
        errors.add("heartbeat", "message must be a non-empty string")
    state_field = heartbeat.get("state_field")
    if state_field is not None and not isinstance(state_field, str):
        errors.add("heartbeat", "state_field must be a string or null")
    return errors


def retry_errors(retry):
    errors = Errors()
    if retry is None:
        return errors
    if not is_json_object(retry) or not set(retry) <= {"max_attempts", "delay_secs", "multiplier"}:
        errors.add("retry", 'must be null or {"max_attempts", "delay_secs"?, "multiplier"?}')
        return errors
    attempts = retry.get("max_attempts")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 100:
        errors.add("retry", "max_attempts must be an integer from 1 to 100")
    delay = retry.get("delay_secs", 0)
    if not is_number(delay) or not 0 <= delay <= 86400:
        errors.add("retry", "delay_secs must be a number from 0 to 86400")
    multiplier = retry.get("multiplier", 1)
    if not is_number(multiplier) or not 1 <= multiplier <= 100:
        errors.add("retry", "multiplier must be a number from 1 to 100")
    return errors


def headers_errors(headers):
    errors = Errors()
    if not is_json_object(headers):
        errors.add("headers", "must be a JSON object of header name -> string value")
        return errors
    for name, value in headers.items():
        if not HEADER_NAME_RE.match(name):
            errors.add("headers", f"'{name}' is not a valid header name")
        elif name.lower() in RESERVED_HEADERS:
            errors.add("headers", f"'{name}' is set by the WebSocket handshake itself")
        if not isinstance(value, str) or "\r" in value or "\n" in value:
            errors.add("headers", f"the value of '{name}' must be a single-line string")
    return errors


def subprotocols_errors(subprotocols):
    errors = Errors()
    if not isinstance(subprotocols, list) or not all(
        isinstance(p, str) and HEADER_NAME_RE.match(p) for p in subprotocols
    ):
        errors.add("subprotocols", "must be a list of subprotocol names (tokens, no spaces or commas)")
    return errors


def capture_errors(capture, heartbeat):
    errors = Errors()
    if not is_json_object(capture):
        errors.add("capture", 'must be an object of name: dotted path, e.g. {"seq": "s"}')
        return errors
    if len(capture) > MAX_CAPTURES:
        errors.add("capture", f"has {len(capture)} entries; at most {MAX_CAPTURES}")
    for name, path in capture.items():
        if not CAPTURE_NAME_RE.match(name):
            errors.add(
                "capture", f"name '{name}' must be letters, digits and _ (not starting with a digit), at most 64"
            )
        if not isinstance(path, str) or not path or len(path) > MAX_CAPTURE_PATH or not all(path.split(".")):
            errors.add(
                "capture",
                f"'{name}' must be a dotted path of keys or indexes, none empty, at most {MAX_CAPTURE_PATH} characters",
            )
    if "state" in capture and isinstance(heartbeat, dict) and heartbeat.get("state_field") is not None:
        errors.add("capture", "'state' is already the heartbeat's state_field; use another name")
    return errors


def resume_errors(resume, capture):
    errors = Errors()
    if resume is None:
        return errors
    shape = 'must be null or {"message": "...{{name}}...", "refused_when": <filter>}'
    if not is_json_object(resume) or set(resume) != {"message", "refused_when"}:
        errors.add("resume", shape)
        return errors
    message = resume["message"]
    if not isinstance(message, str) or not message:
        errors.add("resume", "message must be a non-empty string")
    elif len(message) > MAX_RESUME_MESSAGE:
        errors.add("resume", f"message is over {MAX_RESUME_MESSAGE} characters")
    else:
        used = PLACEHOLDER_RE.findall(message)
        known = set(capture) if is_json_object(capture) else set()
        if not used:
            errors.add("resume", "message uses no {{name}}: nothing to resume with (use initial_messages)")
        for name in sorted(set(used) - known):
            errors.add("resume", f"message uses {{{{{name}}}}}, which capture does not define")
    for problem in filter_checks.check([resume["refused_when"]]):
        errors.add("resume", f"refused_when: {problem.removeprefix('filter 0: ')}")
    return errors
