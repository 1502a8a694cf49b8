from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from orvanta_triggers.api import views

# Trigger paths contain "/", so the action route must come before the catch-all.
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("w/<slug:workspace>/websocket_triggers/", views.TriggerListView.as_view(), name="trigger-list"),
    re_path(
        r"^w/(?P<workspace>[-\w]+)/websocket_triggers/(?P<path>.+)/setenabled/$",
        views.TriggerSetEnabledView.as_view(),
        name="trigger-setenabled",
    ),
    re_path(
        r"^w/(?P<workspace>[-\w]+)/websocket_triggers/(?P<path>.+)/setmode/$",
        views.TriggerSetModeView.as_view(),
        name="trigger-setmode",
    ),
    re_path(
        r"^w/(?P<workspace>[-\w]+)/websocket_triggers/(?P<path>.+)/resume_jobs/$",
        views.TriggerResumeJobsView.as_view(),
        name="trigger-resume-jobs",
    ),
    re_path(
        r"^w/(?P<workspace>[-\w]+)/websocket_triggers/(?P<path>.+)/discard_jobs/$",
        views.TriggerDiscardJobsView.as_view(),
        name="trigger-discard-jobs",
    ),
    re_path(
        r"^w/(?P<workspace>[-\w]+)/websocket_triggers/(?P<path>.+)/$",
        views.TriggerDetailView.as_view(),
        name="trigger-detail",
    ),
    path("w/<slug:workspace>/flows/", views.FlowListView.as_view(), name="flow-list"),
    re_path(r"^w/(?P<workspace>[-\w]+)/flows/(?P<path>.+)/$", views.FlowDetailView.as_view(), name="flow-detail"),
    path("w/<slug:workspace>/jobs/", views.JobListView.as_view(), name="job-list"),
    path("w/<slug:workspace>/runnables/", views.RunnablesView.as_view(), name="runnables"),
    path("w/<slug:workspace>/settings/", views.WorkspaceSettingsView.as_view(), name="workspace-settings"),
    path(
        "w/<slug:workspace>/test_websocket_connection/",
        views.TestConnectionView.as_view(),
        name="test-websocket-connection",
    ),
    path("w/<slug:workspace>/jobs/<uuid:job_id>/", views.JobDetailView.as_view(), name="job-detail"),
    path("w/<slug:workspace>/jobs/<uuid:job_id>/resume/", views.JobResumeView.as_view(), name="job-resume"),
    path("w/<slug:workspace>/jobs/<uuid:job_id>/discard/", views.JobDiscardView.as_view(), name="job-discard"),
]
