"""The app as a package (pyproject.toml): a wheel built from this repo, installed into
a fresh virtualenv beside another Django project written here (its own settings, urls
and celery.py, none of this repo's config/), migrates, and turns a frame into a job
whose result goes back on the socket, with that project's own listener and worker."""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from orvanta_triggers import bus
from tests.support.processes import Process
from tests.support.wsserver import wait_for

PREFIX = f"orvanta-host-{os.getpid()}:"


def run(args, cwd, env=None):
    """Run a command to completion; its output, or the test fails showing it."""
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


@pytest.fixture(scope="module")
def host_python(tmp_path_factory):
    """A new virtualenv holding the wheel (no source of this repo on its path); its
    dependencies are this suite's own installed packages (a .pth file: no download),
    checked against what the wheel declares with `pip check`."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the files git knows (committed or not, ignored ones left
    # out): a build in place would leave build/ behind, and reuse its stale files.
    source = root / "source"
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], settings.BASE_DIR)
    for name in listed.splitlines():
        if (Path(settings.BASE_DIR) / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(settings.BASE_DIR) / name, source / name)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", source], root)
    [wheel] = (root / "dist").glob("orvanta_triggers-*.whl")
    run([sys.executable, "-m", "venv", root / "venv"], root)
    python = root / "venv" / "bin" / "python"
    site = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root).strip())
    (site / "suite_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([python, "-m", "pip", "install", "-q", "--no-deps", wheel], root)
    run([python, "-m", "pip", "check"], root)
    return python


@pytest.fixture
def host_project(tmp_path, ws_server):
    """A Django project of its own using the installed app, pointed at this suite's
    Redis (its own key prefix) and an SQLite file."""
    write(
        tmp_path,
        {
            "manage.py": """
                import os, sys
                from django.core.management import execute_from_command_line
                os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
                execute_from_command_line(sys.argv)
            """,
            "hostsite/__init__.py": "from hostsite.celery import app as celery_app\n",
            "hostsite/celery.py": """
                import os
                from celery import Celery
                os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
                app = Celery("hostsite")
                app.config_from_object("django.conf:settings", namespace="CELERY")
                app.autodiscover_tasks()
            """,
            "hostsite/urls.py": """
                from django.urls import include, path
                urlpatterns = [path("", include("orvanta_triggers.urls"))]
            """,
            "hostsite/settings.py": f"""
                from orvanta_triggers.celeryconfig import celery_settings
                SECRET_KEY = "host-project-test"
                INSTALLED_APPS = [
                    "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
                    "django.contrib.messages", "rest_framework", "rest_framework.authtoken",
                    "drf_spectacular", "channels", "orvanta_triggers", "listener",
                ]
                ROOT_URLCONF = "hostsite.urls"
                USE_TZ = True
                DATABASES = {{"default": {{
                    "ENGINE": "django.db.backends.sqlite3", "NAME": "{tmp_path / "host.sqlite3"}",
                    "OPTIONS": {{"timeout": 30, "transaction_mode": "IMMEDIATE",
                                "init_command": "PRAGMA journal_mode=WAL;"}},
                }}}}
                REDIS_URL = "{settings.REDIS_URL}"
                ORVANTA_REDIS_PREFIX = "{PREFIX}"
                ORVANTA_RUNNABLE_PACKAGES = ["hostscripts"]
                ORVANTA_ALLOW_PRIVATE_URLS = True
                ORVANTA_RECONCILE_INTERVAL_SECS = 0.3
                CELERY_BROKER_URL = REDIS_URL
                globals().update(celery_settings(jobs_queue="{PREFIX}jobs", runnables_queue="{PREFIX}runnables"))
            """,
            "hostscripts/__init__.py": "",
            "hostscripts/shout.py": """
                def main(msg: str):
                    return msg.upper()
            """,
            "triggers.yaml": f"""
                version: 1
                websocket_triggers:
                - {{path: f/host/feed, url: "{ws_server.url}", script_path: shout, can_return_message: true}}
            """,
        },
    )
    yield tmp_path
    client = bus.client()
    for key in client.scan_iter(f"{PREFIX}*"):
        client.delete(key)


def test_wheel_runs_a_frame_to_a_result_in_another_project(host_python, host_project, ws_server):
    """Installed from the wheel into another project: migrate, import a trigger, and a frame's job answers on the socket."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    run([host_python, "manage.py", "migrate", "-v", "0"], host_project, env)
    run([host_python, "manage.py", "createworkspace", "host"], host_project, env)
    run([host_python, "manage.py", "importtriggers", "host", "triggers.yaml"], host_project, env)
    worker = Process(
        [host_python, "-m", "celery", "-A", "hostsite", "worker", "--pool", "threads", "--concurrency", "2"],
        env,
        cwd=host_project,
    )
    listener = Process([host_python, "manage.py", "runlisteners"], env, cwd=host_project)
    try:
        wait_for(lambda: ws_server.open_connections == 1, timeout=30, message="the host project's listener")
        ws_server.send_all("hello from elsewhere")
        wait_for(ws_server.received_snapshot, timeout=30, message="the job's result on the socket")
        assert ws_server.received_snapshot() == ["HELLO FROM ELSEWHERE"]
    finally:
        outputs = [process.stop() for process in (listener, worker)]
    assert "Traceback" not in outputs[0], outputs[0]


def test_wheel_holds_the_app_not_this_repos_project(host_python):
    """The wheel installs orvanta_triggers and listener, with templates and migrations, and nothing of config/, tests or runnables."""
    listing = run(
        [
            host_python,
            "-c",
            "import importlib.metadata as m; print('\\n'.join(str(f) for f in m.files('orvanta-triggers')))",
        ],
        host_python.parent,
    )
    top = {line.split("/")[0] for line in listing.splitlines()}
    assert top == {"orvanta_triggers", "listener", "orvanta_triggers-1.0.0.dist-info"}
    assert "orvanta_triggers/templates/orvanta_triggers/monitor.html" in listing
    assert "orvanta_triggers/migrations/0001_initial.py" in listing
