from django.contrib import admin
from django.urls import include, path

from orvanta_triggers.views import monitor_page

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("orvanta_triggers.api.urls")),
    path("monitor/<slug:workspace>/", monitor_page, name="monitor"),
]
