"""Presentation helpers of the admin: status badges, JSON, durations, one-line errors."""

import hashlib
import json

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.html import format_html

from orvanta_triggers.models import Job, WebSocketTrigger

GREY, AMBER, GREEN, RED = "#6c757d", "#b76e00", "#198754", "#dc3545"
TRIGGER_STATUS_COLOURS = {"disabled": GREY, "connecting": AMBER, "connected": GREEN, "error": RED}
JOB_STATUS_COLOURS = {
    "queued": GREY,
    "running": AMBER,
    "success": GREEN,
    "failure": RED,
    "suspended": AMBER,
    "discarded": GREY,
}


def badge(label, colour, key):
    return format_html(
        '<span class="orvanta-badge orvanta-badge-{}" style="display:inline-block;padding:1px 8px;'
        'border-radius:9px;color:#fff;background:{};font-weight:600;font-size:11px;white-space:nowrap">{}</span>',
        key,
        colour,
        label,
    )


def effective_status(trigger):
    """What the trigger is doing: `disabled` whenever it is disabled, whatever is stored."""
    return WebSocketTrigger.Status.DISABLED if not trigger.enabled else trigger.status


def trigger_badge(trigger):
    status = effective_status(trigger)
    label = WebSocketTrigger.Status(status).label if status in WebSocketTrigger.Status.values else status
    return badge(label, TRIGGER_STATUS_COLOURS.get(status, GREY), status)


def job_badge(job):
    label = Job.Status(job.status).label if job.status in Job.Status.values else job.status
    return badge(label, JOB_STATUS_COLOURS.get(job.status, GREY), job.status)


def job_duration(job):
    if not (job.started_at and job.finished_at):
        return "—"
    seconds = (job.finished_at - job.started_at).total_seconds()
    if seconds < 60:
        return f"{seconds:.3f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def pretty_json(value):
    return format_html(
        '<pre class="orvanta-json" style="white-space:pre-wrap;max-height:30em;overflow:auto;margin:0">{}</pre>',
        json.dumps(value, indent=2, ensure_ascii=False, default=str),
    )


def error_text(exc):
    """A ValidationError or a service refusal as one line."""
    if isinstance(exc, ValidationError):
        if hasattr(exc, "error_dict"):
            return "; ".join(
                (" ".join(msgs) if field == NON_FIELD_ERRORS else f"{field}: {' '.join(msgs)}")
                for field, msgs in exc.message_dict.items()
            )
        return " ".join(exc.messages)
    return str(exc)


def frame_fingerprint(frame):
    """Identifies a stored frame across requests (their positions shift as frames arrive)."""
    return hashlib.sha256(json.dumps(frame, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]
