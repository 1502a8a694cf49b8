"""Views of one trigger beside its change form: test connection (also the list's action),
replay one of its recent frames, and the change form's recent jobs and frames."""

import logging

from django.contrib import messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import Truncator

from orvanta_triggers import monitor, netguard, selectors, services
from orvanta_triggers.admin.display import frame_fingerprint, job_badge, job_duration
from orvanta_triggers.celeryapp import celery_app
from orvanta_triggers.client.probe import probe_connection
from orvanta_triggers.models import Job

logger = logging.getLogger(__name__)

FRAME_MSG_CHARS = 300
RECENT_JOBS = 20


class TriggerViewsMixin:
    """For WebSocketTriggerAdmin; each view acts on a trigger the user may change."""

    def _report_probe(self, request, trigger):
        """Connect as the listener would, then close; one message with the outcome."""
        try:
            result = probe_connection(
                celery_app=celery_app(),
                workspace_id=trigger.workspace_id,
                url=trigger.url,
                url_runnable_args=trigger.url_runnable_args,
                headers=trigger.headers,
                subprotocols=trigger.subprotocols,
            )
        except Exception as exc:  # e.g. the broker is away while a URL runnable must run
            logger.warning("test connection of trigger %s failed: %s", trigger.pk, exc, exc_info=True)
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "subprotocol": None}
        if result["ok"]:
            subprotocol = f", subprotocol {result['subprotocol']}" if result.get("subprotocol") else ""
            self.message_user(
                request,
                f"{trigger.path}: connection OK ({netguard.redact_text(trigger.url)}{subprotocol})",
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request, f"{trigger.path}: connection failed: {netguard.redact_text(result['error'])}", messages.ERROR
            )

    # Views of one trigger: test connection, replay a frame

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/test-connection/",
                self.admin_site.admin_view(self.test_connection_view),
                name="%s_%s_test_connection" % info,
            ),
            path("<path:object_id>/replay/", self.admin_site.admin_view(self.replay_view), name="%s_%s_replay" % info),
            *super().get_urls(),
        ]

    def _trigger_to_act_on(self, request, object_id):
        trigger = self.get_object(request, unquote(object_id))  # 404 outside the user's workspaces
        if not self.has_change_permission(request, trigger):
            raise PermissionDenied
        return trigger

    def test_connection_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        trigger = self._trigger_to_act_on(request, object_id)
        self._report_probe(request, trigger)
        return HttpResponseRedirect(self.change_url(trigger))

    def replay_view(self, request, object_id):
        """Run the trigger's runnable again on one of its recent frames."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        trigger = self._trigger_to_act_on(request, object_id)
        back = HttpResponseRedirect(self.change_url(trigger) + "#recent-frames")
        try:
            frames = monitor.recent_frames(trigger.id)
        except Exception as exc:
            logger.warning("replay on trigger %s: recent frames unavailable: %s", trigger.pk, exc)
            self.message_user(
                request, "Recent frames are unavailable (Redis did not answer); nothing replayed.", messages.ERROR
            )
            return back
        wanted = request.POST.get("frame", "")
        frame = next((f for f in frames if frame_fingerprint(f) == wanted), None)
        if frame is None:
            self.message_user(request, "That frame is no longer among the trigger's recent frames.", messages.ERROR)
            return back
        if frame.get("truncated"):
            self.message_user(
                request, "That frame was too large to keep whole, so it can't be replayed.", messages.ERROR
            )
            return back
        try:
            job_id = services.enqueue_trigger_job(
                trigger=trigger,
                msg=frame["msg"],
                msg_type=frame.get("msg_type", "text"),
                url=frame.get("url"),
            )
        except Exception as exc:
            logger.warning("replay on trigger %s failed: %s", trigger.pk, exc, exc_info=True)
            self.message_user(request, f"Replay failed: {type(exc).__name__}: {exc}", messages.ERROR)
            return back
        job_url = reverse("admin:orvanta_triggers_job_change", args=[job_id])
        self.message_user(
            request,
            format_html(
                'Replayed the frame received at {}: job <a href="{}">{}</a> queued.', frame.get("at"), job_url, job_id
            ),
            messages.SUCCESS,
        )
        return back

    # The change form's read-only sections

    def change_view(self, request, object_id, form_url="", extra_context=None):
        trigger = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if self.has_view_or_change_permission(request, trigger):
            context.update(self._recent_context(request, trigger))
        return super().change_view(request, object_id, form_url, context)

    def _recent_context(self, request, trigger):
        link_jobs = self.admin_site.is_registered(Job) and self.admin_site.get_model_admin(Job).has_view_permission(
            request
        )
        jobs = [
            {
                "job": job,
                "badge": job_badge(job),
                "duration": job_duration(job),
                "url": reverse("admin:orvanta_triggers_job_change", args=[quote(job.pk)]) if link_jobs else None,
            }
            for job in selectors.workspace_jobs(workspace=trigger.workspace, trigger_path=trigger.path)[:RECENT_JOBS]
        ]
        frames, frames_error = [], None
        try:
            stored = monitor.recent_frames(trigger.id)
        except Exception as exc:
            logger.warning("trigger %s: recent frames unavailable: %s", trigger.pk, exc)
            frames_error = f"Recent frames are unavailable: Redis did not answer ({type(exc).__name__})."
        else:
            for frame in stored:
                if not isinstance(frame, dict):
                    continue
                msg = str(frame.get("msg", ""))
                frames.append(
                    {
                        "at": parse_datetime(str(frame.get("at") or "")) or frame.get("at"),
                        "msg_type": frame.get("msg_type", "text"),
                        "msg": Truncator(msg).chars(FRAME_MSG_CHARS),
                        "length": len(msg),
                        "url": netguard.redact_text(frame.get("url") or ""),
                        "truncated": bool(frame.get("truncated")),
                        "fingerprint": frame_fingerprint(frame),
                    }
                )
        may_act = self.has_change_permission(request, trigger)
        jobs_url = reverse("admin:orvanta_triggers_job_changelist")
        of_this_trigger = {"workspace__id__exact": trigger.workspace_id, "trigger_path": trigger.path}
        return {
            "suspended_job_count": selectors.suspended_job_count(
                workspace_id=trigger.workspace_id, trigger_path=trigger.path
            ),
            "suspended_jobs_url": f"{jobs_url}?{urlencode({**of_this_trigger, 'status__exact': 'suspended'})}"
            if link_jobs
            else None,
            "error_handler_runs_url": f"{jobs_url}?{urlencode({**of_this_trigger, 'kind__exact': 'error_handler'})}"
            if link_jobs
            else None,
            "recent_jobs": jobs,
            "recent_jobs_limit": RECENT_JOBS,
            "recent_frames": frames,
            "recent_frames_error": frames_error,
            "can_replay": may_act,
            "can_test_connection": may_act,
        }
