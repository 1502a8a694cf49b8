"""config/settings.py as production reads it: a secret of its own or no start, and
HTTPS defaults that `manage.py check --deploy` finds nothing to say about."""

import json
import subprocess
import sys

from django.conf import settings
from django.core.management.utils import get_random_secret_key

SECURITY_SETTINGS = (
    "SECURE_SSL_REDIRECT",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
)


def run(args, **env):
    """`args` run with config.settings and only `env` (no DJANGO_DEBUG, no secret unless given)."""
    return subprocess.run(
        args,
        cwd=settings.BASE_DIR,
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def security_settings(**env):
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{name: getattr(settings, name) for name in {SECURITY_SETTINGS!r}}}))"
    )
    completed = run([sys.executable, "-c", code], **env)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def start_error(**env):
    """The last line Django prints when it can't set up with `env`."""
    completed = run([sys.executable, "-c", "import django; django.setup()"], **env)
    assert completed.returncode != 0
    return completed.stderr.strip().splitlines()[-1]


def test_production_refuses_to_start_without_a_secret_key():
    """With DJANGO_DEBUG off and no DJANGO_SECRET_KEY, loading the settings fails, saying which variable to set."""
    assert start_error() == (
        "django.core.exceptions.ImproperlyConfigured: DJANGO_SECRET_KEY must be set to a secret of your own "
        "when DJANGO_DEBUG is off (README, Security)"
    )


def test_production_refuses_the_development_key():
    """The key development runs on, known to everyone, is refused in production."""
    assert "DJANGO_SECRET_KEY must be set" in start_error(DJANGO_SECRET_KEY="dev-only-insecure-secret-key-change-me")


def test_debug_runs_without_a_secret_key():
    """`make run` (DJANGO_DEBUG on) needs no secret, and gets none of production's HTTPS settings."""
    assert security_settings(DJANGO_DEBUG="true") == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_production_defaults_to_https_only():
    """Production redirects to https, marks its cookies Secure and sends HSTS for a year."""
    assert security_settings(DJANGO_SECRET_KEY=get_random_secret_key()) == {
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_each_production_default_has_a_variable():
    """Every HTTPS default can be changed through its environment variable."""
    assert security_settings(
        DJANGO_SECRET_KEY=get_random_secret_key(),
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SESSION_COOKIE_SECURE="false",
        DJANGO_CSRF_COOKIE_SECURE="false",
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="false",
        DJANGO_SECURE_HSTS_PRELOAD="false",
        DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    ) == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": False,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def test_check_deploy_is_clean_with_the_readme_production_settings():
    """`manage.py check --deploy` reports nothing, warnings included, with the README's production variables."""
    completed = run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_SECRET_KEY=get_random_secret_key(),
        DJANGO_ALLOWED_HOSTS="triggers.example.org",
        DJANGO_SECURE_PROXY_SSL_HEADER="HTTP_X_FORWARDED_PROTO,https",
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "System check identified no issues (0 silenced)."
