"""The project's Celery app, for code that sends tasks (the listener, the API's and
the admin's test connection): the app the project made current, as Celery's Django
setup does (its package __init__ imports it)."""

from celery import current_app
from django.core.exceptions import ImproperlyConfigured


def celery_app():
    """The current Celery app; ImproperlyConfigured when the project made none (Celery's
    default app would silently send to a broker nobody configured)."""
    app = current_app._get_current_object()
    if not app.conf.broker_url:
        raise ImproperlyConfigured(
            "no Celery app with a broker is configured: import your project's Celery app in its "
            "package's __init__.py (README, Use it in your own Django project)"
        )
    return app
