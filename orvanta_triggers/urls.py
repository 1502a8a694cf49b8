"""The app's pages and API, for a project's URLconf: `path("", include("orvanta_triggers.urls"))`
(its admin, if any, is the project's own; the monitor's WebSocket route is in
orvanta_triggers.routing)."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from orvanta_triggers.views import monitor_index, monitor_page

urlpatterns = [
    path("api/", include("orvanta_triggers.api.urls")),
    # Any member logs in here (the admin's login takes staff only).
    path("login/", auth_views.LoginView.as_view(template_name="orvanta_triggers/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("monitor/", monitor_index, name="monitor-index"),
    path("monitor/<slug:workspace>/", monitor_page, name="monitor"),
]
