"""The admin and the live monitor as a person uses them: headless Chromium (Debian's
package, driven by Playwright) against the real ASGI app served by daphne, with a
real listener, worker, Redis and WebSocket server. Screenshots of every step land in
tests/artifacts/ for review."""

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest
from django.conf import settings

from orvanta_triggers import services
from orvanta_triggers.models import Job
from tests.support.ports import free_port
from tests.support.processes import Process, process_env
from tests.support.wsserver import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(settings.BASE_DIR) / "tests" / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Playwright's sync API keeps an event loop in this thread; the test's own database
# calls (fixtures, assertions) are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: make test installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def web(transactional_db):
    """The ASGI app (admin, monitor, Channels) served by daphne on a free port, one per
    test: a server kept across tests would keep Django's content-type cache, whose ids
    the database no longer has once a test's rows are flushed (the admin's change log
    then fails on its foreign key)."""
    port = free_port()
    process = Process(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        process_env(DJANGO_DEBUG="true"),
    )

    def answers():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(answers, timeout=20, message="daphne")
    yield f"http://127.0.0.1:{port}"
    process.stop()


@pytest.fixture
def admin_user(django_user_model):
    user = django_user_model.objects.create_superuser(username="root", password="secret-pw", email="")
    services.create_workspace(slug="acme", name="Acme", owner=user)
    return user


@pytest.fixture
def page(browser, web, admin_user, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15000)
    shots = ARTIFACTS / request.node.name
    shots.mkdir(parents=True, exist_ok=True)
    page.shoot = lambda name: page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.goto(f"{web}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", "secret-pw")
    page.click("input[type=submit]")
    page.wait_for_url(f"{web}/admin/")
    yield page
    context.close()


def test_admin_login_shows_the_triggers_app(page):
    """A superuser logs in and sees the Orvanta triggers section."""
    page.shoot("01-logged-in")
    assert page.locator("text=WebSocket triggers").first.is_visible()


def test_trigger_created_in_the_admin_connects_and_runs_jobs(page, web, ws_server, listener, celery_worker):
    """A trigger with two OR filters and a heartbeat, made in the form, connects; a matching frame makes a job."""
    page.goto(f"{web}/admin/orvanta_triggers/websockettrigger/add/")
    page.select_option("#id_workspace", label="acme")
    page.fill("#id_path", "f/browser/feed")
    page.fill("#id_url", ws_server.url)
    page.select_option("#id_script_path", "examples/echo")
    page.fill("#id_filters", '[{"key": "type", "value": "tick"}, {"key": "type", "value": "trade"}]')
    page.select_option("#id_filter_logic", "or")
    page.fill("#id_heartbeat", '{"interval_secs": 5, "message": "{\\"op\\": \\"ping\\"}"}')
    page.shoot("02-form-filled")
    page.click("input[name=_save]")
    page.wait_for_url(f"{web}/admin/orvanta_triggers/websockettrigger/")
    wait_for(lambda: ws_server.open_connections == 1, timeout=10, message="the connection")

    def connected_badge():
        page.reload()
        return page.locator("text=connected").count() > 0

    wait_for(connected_badge, timeout=10, message="the connected badge", interval=0.5)
    page.shoot("03-connected")

    ws_server.send_all('{"type": "trade", "px": 1}')
    wait_for(lambda: Job.objects.filter(status="success").exists(), timeout=15, message="the job")
    page.goto(f"{web}/admin/orvanta_triggers/job/")
    assert page.locator("text=f/browser/feed").count() > 0
    page.shoot("04-job-listed")


def test_test_connection_on_a_bad_url_shows_the_error(page, web, ws_server):
    """The test connection action on an unreachable URL reports the exact failure."""
    ws_server.stop()
    trigger = services.create_trigger(
        workspace=_acme(), path="f/browser/down", url=ws_server.url, script_path="examples/echo"
    )
    page.goto(f"{web}/admin/orvanta_triggers/websockettrigger/")
    page.check(f"input[name=_selected_action][value='{trigger.pk}']")
    page.select_option("select[name=action]", "test_connection")
    page.click("button[name=index]")
    error = page.locator(".messagelist .error")
    error.first.wait_for()
    page.shoot("05-test-connection-error")
    assert "refused" in error.first.inner_text().lower()


def test_monitor_shows_a_frame_arriving_live(page, web, ws_server, listener):
    """The monitor page shows the trigger connected and a frame pushed as it arrives."""
    services.create_trigger(workspace=_acme(), path="f/browser/live", url=ws_server.url, script_path="examples/echo")
    wait_for(lambda: ws_server.open_connections == 1, timeout=10, message="the connection")
    page.goto(f"{web}/monitor/acme/")
    page.locator("#conn", has_text="live").wait_for()
    ws_server.send_all('{"hello": "browser"}')
    page.locator("#tail li[data-kind=frame]", has_text="browser").first.wait_for()
    page.shoot("06-monitor-live-frame")
    assert page.locator("#triggers tr[data-path='f/browser/live']").count() == 1


def test_suspend_then_resume_from_the_admin(page, web, ws_server, listener, celery_worker):
    """Suspend a trigger in the admin, send frames, resume its suspended jobs from the admin: they succeed."""
    trigger = services.create_trigger(
        workspace=_acme(), path="f/browser/held", url=ws_server.url, script_path="examples/echo"
    )
    wait_for(lambda: ws_server.open_connections == 1, timeout=10, message="the connection")
    page.goto(f"{web}/admin/orvanta_triggers/websockettrigger/{trigger.pk}/change/")
    page.select_option("#id_mode", "suspended")
    page.click("input[name=_continue]")
    page.locator(".messagelist .success").first.wait_for()
    page.shoot("07-suspended")
    assert Job.objects.count() == 0

    for n in range(3):
        ws_server.send_all(f"held-{n}")
    wait_for(lambda: Job.objects.filter(status="suspended").count() == 3, timeout=15, message="3 suspended jobs")
    page.reload()
    page.click("a.orvanta-suspended-jobs:has-text('Suspended jobs (3)')")
    page.locator("#result_list").wait_for()
    page.shoot("08-suspended-jobs")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "resume_selected")
    page.click("button[name=index]")
    page.locator(".messagelist .success", has_text="Resumed 3 job(s).").wait_for()
    wait_for(lambda: Job.objects.filter(status="success").count() == 3, timeout=15, message="3 resumed jobs to succeed")
    page.goto(f"{web}/admin/orvanta_triggers/job/?status__exact=success")
    page.shoot("09-resumed-jobs-succeeded")
    assert sorted(job.result for job in Job.objects.all()) == ["held-0", "held-1", "held-2"]
    assert ws_server.connects == 1


def _acme():
    from orvanta_triggers.models import Workspace

    return Workspace.objects.get(slug="acme")
