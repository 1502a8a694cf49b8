"""Secrets by role: what a viewer sees of a trigger's configuration and of a job's
arguments, and how a redacted value sent back keeps the stored one.

A trigger's secrets are its header values, its URL runnable args, its initial
messages (raw and binary messages, a runnable's args), its resume message (a
gateway's RESUME carries the token) and the values in its URL's query string (and a
userinfo password). Members who may write the trigger
(developers, admins) see them as stored; viewers see each replaced by "***" in the
API, the admin and the monitor. A job's arguments are shown to viewers with the
query values of every URL in them replaced the same way.
"""

from orvanta_triggers import netguard, roles

REDACTED = netguard.REDACTED


def sees_secrets(role):
    """Whether a member with `role` (None: not a member) sees secrets as stored."""
    return roles.can_write(role)


def redact_url(url):
    """`url` with its query values and password redacted; a runnable URL
    ($script:, $flow:) or a URL with neither is shown as it is."""
    if not isinstance(url, str):
        return url
    return netguard.redact_text(url)


def redact_values(obj):
    """A JSON object with every value replaced (its keys stay readable); anything
    else, whose shape validation refuses anyway, replaced whole."""
    if isinstance(obj, dict):
        return {key: REDACTED for key in obj}
    return REDACTED


def redact_initial_message(item):
    if not isinstance(item, dict):
        return REDACTED
    if isinstance(item.get("runnable_result"), dict):
        runnable = item["runnable_result"]
        shown = {key: value for key, value in runnable.items() if key != "args"}
        if "args" in runnable:
            shown["args"] = redact_values(runnable["args"])
        return {"runnable_result": shown}
    return {key: REDACTED for key in item}


def redact_initial_messages(messages):
    if not isinstance(messages, list):
        return REDACTED
    return [redact_initial_message(item) for item in messages]


def redact_resume(resume):
    """The resume message hidden; `refused_when` (a filter) shown."""
    if not isinstance(resume, dict):
        return resume
    return {**resume, "message": REDACTED} if "message" in resume else resume


REDACTORS = {
    "url": redact_url,
    "resume": redact_resume,
    "url_runnable_args": redact_values,
    "headers": redact_values,
    "initial_messages": redact_initial_messages,
}


def redact_trigger_config(config):
    """The trigger JSON `config` (a dict) as a viewer sees it."""
    return {name: REDACTORS[name](value) if name in REDACTORS else value for name, value in config.items()}


# Jobs whose args are a trigger's runnable args (secret to viewers, as in its
# configuration), and what their results show viewers: a URL with its secrets
# redacted, or nothing of an initial message (as its raw form is hidden too).
RUNNABLE_JOB_RESULT_REDACTORS = {
    "url_runnable": lambda result: redact_urls_in(result),
    "test_connection": lambda result: redact_urls_in(result),
    "initial_message": lambda result: REDACTED if result is not None else None,
}


def redact_job(data):
    """The job JSON `data` as a viewer sees it: URLs in args redacted; a runnable
    job's args hidden and its result as its kind allows."""
    redact_result = RUNNABLE_JOB_RESULT_REDACTORS.get(data.get("kind"))
    if redact_result is None:
        return {**data, "args": redact_urls_in(data["args"])}
    return {**data, "args": redact_values(data["args"]), "result": redact_result(data["result"])}


def redact_urls_in(value):
    """A JSON value with the query values and passwords of every URL in its strings
    redacted (a job's args as a viewer sees them). A copy, made without recursion:
    args may nest any depth."""
    if isinstance(value, str):
        return netguard.redact_text(value)
    if not isinstance(value, (dict, list)):
        return value
    top = _container_copy(value)
    stack = [top]
    while stack:
        node = stack.pop()
        for key, child in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if isinstance(child, (dict, list)):
                child = _container_copy(child)
                stack.append(child)
            elif isinstance(child, str):
                child = netguard.redact_text(child)
            node[key] = child
    return top


def _container_copy(value):
    return dict(value) if isinstance(value, dict) else list(value)


# A redacted value sent back (a client that read the trigger as a viewer and writes
# it back) keeps what is stored.


def _keep_values(sent, stored):
    if not (isinstance(sent, dict) and isinstance(stored, dict)):
        return sent
    return {key: stored[key] if value == REDACTED and key in stored else value for key, value in sent.items()}


def _keep_initial_message(sent, stored):
    if sent == redact_initial_message(stored):
        return stored
    runnable, stored_runnable = (
        (sent.get("runnable_result"), stored.get("runnable_result"))
        if isinstance(sent, dict) and isinstance(stored, dict)
        else (None, None)
    )
    if isinstance(runnable, dict) and isinstance(stored_runnable, dict) and "args" in runnable:
        return {"runnable_result": {**runnable, "args": _keep_values(runnable["args"], stored_runnable.get("args"))}}
    return sent


def _keep_initial_messages(sent, stored):
    if not (isinstance(sent, list) and isinstance(stored, list)):
        return sent
    return [_keep_initial_message(item, stored[i]) if i < len(stored) else item for i, item in enumerate(sent)]


def _keep_url(sent, stored):
    return stored if sent != stored and sent == redact_url(stored) else sent


def _keep_resume(sent, stored):
    if isinstance(sent, dict) and isinstance(stored, dict) and sent.get("message") == REDACTED:
        return {**sent, "message": stored.get("message")}
    return sent


KEEPERS = {
    "url": _keep_url,
    "resume": _keep_resume,
    "url_runnable_args": _keep_values,
    "headers": _keep_values,
    "initial_messages": _keep_initial_messages,
}


def keep_stored_secrets(trigger, fields):
    """`fields` (changes to `trigger`) with every redacted secret replaced by the
    value stored: "***" for a header, a URL runnable arg or a runnable's arg of the
    same name, an initial message sent back as a viewer sees it, the URL as a viewer
    sees it."""
    return {
        name: KEEPERS[name](value, getattr(trigger, name)) if name in KEEPERS else value
        for name, value in fields.items()
    }
