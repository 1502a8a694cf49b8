"""The pages: the live monitor, its login for any member, and the list of a member's monitors."""

from django.test import Client

from orvanta_triggers import services
from orvanta_triggers.models import Membership


def test_a_member_who_is_not_staff_logs_in_to_the_monitor(workspace, django_user_model):
    """Any member logs in from the monitor's redirect and lands on it (the admin's login refused non-staff)."""
    member = django_user_model.objects.create_user(username="bob", password="pw-bob")
    services.set_membership(workspace=workspace, user=member, role=Membership.Role.VIEWER)
    client = Client()
    to_login = client.get("/monitor/acme/")
    assert to_login.status_code == 302
    login_url = to_login["Location"]
    assert client.get(login_url).status_code == 200
    logged_in = client.post(login_url, {"username": "bob", "password": "pw-bob", "next": "/monitor/acme/"})
    assert logged_in.status_code == 302 and logged_in["Location"] == "/monitor/acme/"
    assert client.get("/monitor/acme/").status_code == 200


def test_a_login_without_next_lands_on_the_members_monitors(workspace, user, django_user_model):
    """Logging in without a destination shows the monitors of the member's workspaces only."""
    services.create_workspace(slug="elsewhere")
    client = Client()
    response = client.post("/login/", {"username": "alice", "password": "pw"}, follow=True)
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == "/monitor/"
    assert 'href="/monitor/acme/"' in page and "/monitor/elsewhere/" not in page


def test_a_wrong_password_is_refused(workspace, user):
    """The login page refuses a wrong password and logs nobody in."""
    client = Client()
    assert client.post("/login/", {"username": "alice", "password": "nope"}).status_code == 200
    assert client.get("/monitor/acme/").status_code == 302


def test_logging_out_ends_the_monitor_session(workspace, user):
    """POST /logout/ logs the member out; the monitor then asks for a login again."""
    client = Client()
    client.force_login(user)
    assert client.get("/monitor/acme/").status_code == 200
    assert client.post("/logout/")["Location"] == "/login/"
    assert client.get("/monitor/acme/")["Location"].startswith("/login/")
