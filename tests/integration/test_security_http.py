"""Issue 19 on the HTTP side: login throttling, API tokens, roles, sessions.

Real Django (its test client against the whole middleware stack, django-axes
included), a real SQLite database and, where a graph is read, the test Redis.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.db.models import F
from django.test import Client
from django.utils import timezone

from tests.conftest import channel_layers
from tests.integration.test_web_auth import write_host
from webapp.accounts.models import ApiToken
from webapp.accounts.roles import ADMIN, VIEWER, role_of, set_role
from webapp.accounts.tokens import token_digest

pytestmark = pytest.mark.django_db

PASSWORD = "right-pw-for-tests-1"
THROTTLED = "Too many failed logins"


def make_user(name: str, role: str | None = VIEWER):
    user = get_user_model().objects.create_user(name, password=PASSWORD)
    if role is None:
        user.groups.clear()
    else:
        set_role(user, role)
    return user


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def log_in(client: Client, username: str, password: str, address="192.0.2.1", **extra):
    return client.post("/login/", {"username": username, "password": password},
                       REMOTE_ADDR=address, **extra)


# ------------------------------------------------------------------ throttling


def test_sixth_attempt_is_refused_even_with_the_right_password(settings, client):
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    make_user("admin2")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = log_in(client, "admin2", "wrong")
        assert response.status_code == 200
        assert "Wrong user name or password" in response.content.decode()
    response = log_in(client, "admin2", "wrong")  # the fifth: locks
    assert response.status_code == 429
    response = log_in(client, "admin2", PASSWORD)  # the sixth, right: refused
    assert response.status_code == 429
    body = response.content.decode()
    assert THROTTLED in body and "_auth_user_id" not in client.session
    # The cool-off ends, on the throttle's own clock: its failures are made
    # older than the cool-off rather than waited out.
    aged = AccessAttempt.objects.update(
        attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1))
    assert aged >= 1
    response = log_in(client, "admin2", PASSWORD)
    assert response.status_code == 302
    assert "_auth_user_id" in client.session


def test_a_success_resets_the_count(settings, client):
    make_user("bob")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "bob", "wrong")
    assert log_in(client, "bob", PASSWORD).status_code == 302
    client.post("/logout/")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "bob", "wrong").status_code == 200
    assert log_in(client, "bob", PASSWORD).status_code == 302


def test_one_address_guessing_many_names_is_throttled(settings, client):
    make_user("carol")
    for i in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, f"nobody{i}", "wrong", address="198.51.100.9")
    response = log_in(client, "carol", PASSWORD, address="198.51.100.9")
    assert response.status_code == 429
    # Another address may still log in as carol (her name has no failures).
    elsewhere = log_in(Client(), "carol", PASSWORD, address="198.51.100.10")
    assert elsewhere.status_code == 302


def test_behind_a_proxy_the_trusted_header_names_the_client(settings):
    settings.PORTOLAN_CLIENT_IP_HEADER = "X-Forwarded-For"
    proxy = "10.0.0.1"
    make_user("dave")
    for i in range(settings.AXES_FAILURE_LIMIT):
        # What the client wrote itself (left) changes each time: not trusted.
        log_in(Client(), f"x{i}", "wrong", address=proxy,
               HTTP_X_FORWARDED_FOR=f"203.0.113.{i}, 198.51.100.20")
    locked = log_in(Client(), "dave", PASSWORD, address=proxy,
                    HTTP_X_FORWARDED_FOR="198.51.100.20")
    assert locked.status_code == 429
    # Another client behind the same proxy is not locked out with it.
    other = log_in(Client(), "dave", PASSWORD, address=proxy,
                   HTTP_X_FORWARDED_FOR="198.51.100.21")
    assert other.status_code == 302


def test_failures_and_lockouts_are_in_the_admins_login_log(settings, client):
    make_user("erin")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "erin", "wrong", address="192.0.2.44")
    admin = logged_in(make_user("root2", ADMIN))
    attempts = admin.get("/admin/axes/accessattempt/")
    assert attempts.status_code == 200
    assert "erin" in attempts.content.decode()
    assert "192.0.2.44" in attempts.content.decode()
    failures = admin.get("/admin/axes/accessfailurelog/")
    assert failures.status_code == 200 and "erin" in failures.content.decode()
    viewer = logged_in(make_user("frank"))
    assert viewer.get("/admin/axes/accessattempt/").status_code == 302  # to login


# ------------------------------------------------------------------ tokens


def create_token(client: Client, name: str = "grafana") -> str:
    response = client.post("/account/tokens/", {"name": name})
    assert response.status_code == 200, response.content
    assert response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    start = html.index('id="new-token">') + len('id="new-token">')
    return html[start:html.index("<", start)]


def bearer(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_a_token_is_shown_once_and_stored_hashed(live_redis):
    client = logged_in(make_user("gina"))
    token = create_token(client)
    assert token.startswith("ptl_") and len(token) > 40
    stored = ApiToken.objects.get(name="grafana")
    assert stored.digest == token_digest(token) and token not in stored.digest
    listing = client.get("/account/tokens/").content.decode()
    assert "grafana" in listing and token not in listing
    assert stored.prefix in listing


def test_a_token_reads_the_graph_and_node_apis(live_redis):
    write_host(live_redis.url, host="tok-h1")
    token = create_token(logged_in(make_user("hal")))
    api = Client()
    graph = api.get("/api/graph/?level=host", **bearer(token))
    assert graph.status_code == 200
    assert [n["id"] for n in graph.json()["nodes"]] == ["host:tok-h1"]
    node = api.get("/api/node/?id=host:tok-h1", **bearer(token))
    assert node.status_code == 200
    assert ApiToken.objects.get().last_used is not None


def test_a_token_opens_no_page_no_admin_and_writes_nothing(live_redis):
    owner = make_user("ivy", ADMIN)
    token = create_token(logged_in(owner))
    api = Client()
    assert api.get("/", **bearer(token))["Location"].startswith("/login/")
    assert api.get("/admin/", **bearer(token))["Location"].startswith("/admin/login/")
    assert api.get("/account/tokens/", **bearer(token)).status_code == 302
    assert api.post("/account/tokens/", {"name": "more"}, **bearer(token)
                    ).status_code in (302, 403)
    assert api.post("/api/graph/", **bearer(token)).status_code == 405
    assert api.post("/account/password/", {}, **bearer(token)).status_code in (302, 403)
    assert ApiToken.objects.count() == 1


def test_a_revoked_token_is_refused_at_once(live_redis):
    client = logged_in(make_user("jack"))
    token = create_token(client)
    api = Client()
    assert api.get("/api/graph/?level=host", **bearer(token)).status_code == 200
    pk = ApiToken.objects.get().pk
    assert client.post(f"/account/tokens/{pk}/revoke/").status_code == 302
    refused = api.get("/api/graph/?level=host", **bearer(token))
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")


def test_a_deactivated_users_token_is_refused(live_redis):
    user = make_user("kim")
    token = create_token(logged_in(user))
    user.is_active = False
    user.save()
    assert Client().get("/api/graph/", **bearer(token)).status_code == 401


@pytest.mark.parametrize("header", ["Bearer ", "Bearer ptl_nope", "Bearer x" * 300,
                                    "Bearer ptl_\u00e9\u0000"])
def test_unknown_tokens_are_401(live_redis, header):
    response = Client().get("/api/graph/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid or revoked API token"}


def test_another_scheme_leaves_the_session_in_charge(live_redis):
    # A proxy's Basic auth passes Authorization on: the session still counts.
    client = logged_in(make_user("lou"))
    response = client.get("/api/graph/?level=host", HTTP_AUTHORIZATION="Basic eDp5")
    assert response.status_code == 200


def test_token_names_are_per_user_and_checked(live_redis):
    client = logged_in(make_user("max"))
    create_token(client, "ci")
    again = client.post("/account/tokens/", {"name": "ci"})
    assert again.status_code == 400 and "already have" in again.content.decode()
    assert client.post("/account/tokens/", {"name": ""}).status_code == 400
    create_token(logged_in(make_user("ned")), "ci")  # another user's "ci": fine


# ------------------------------------------------------------------ roles


def test_a_viewer_cannot_reach_users_or_others_tokens():
    other = logged_in(make_user("olga"))
    create_token(other, "olgas")
    viewer = logged_in(make_user("pete"))
    for url in ("/admin/", "/admin/auth/user/", "/admin/accounts/apitoken/",
                "/admin/auth/group/"):
        response = viewer.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/admin/login/"), url
    pk = ApiToken.objects.get(name="olgas").pk
    assert viewer.post(f"/account/tokens/{pk}/revoke/").status_code == 404
    assert "olgas" not in viewer.get("/account/tokens/").content.decode()
    assert ApiToken.objects.filter(pk=pk).exists()


def test_an_admin_manages_users_and_everyones_tokens():
    create_token(logged_in(make_user("quin")), "quins")
    admin = logged_in(make_user("rita", ADMIN))
    users = admin.get("/admin/auth/user/")
    assert users.status_code == 200 and "quin" in users.content.decode()
    tokens = admin.get("/admin/accounts/apitoken/")
    assert tokens.status_code == 200 and "quins" in tokens.content.decode()
    pk = ApiToken.objects.get(name="quins").pk
    deleted = admin.post(f"/admin/accounts/apitoken/{pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert not ApiToken.objects.filter(pk=pk).exists()
    # A new user made by the admin, as a viewer.
    added = admin.post("/admin/auth/user/add/", {
        "username": "sam", "password1": PASSWORD, "password2": PASSWORD,
        "usable_password": "true"})
    assert added.status_code == 302, added.content.decode()[:2000]
    sam = get_user_model().objects.get(username="sam")
    assert role_of(sam) == VIEWER and not sam.is_staff


def test_a_login_without_a_role_sees_no_map(live_redis):
    client = logged_in(make_user("tess", role=None))
    assert client.get("/").status_code == 403
    assert client.get("/api/graph/").status_code == 403


def test_roles_keep_staff_in_step():
    user = make_user("uma")
    assert role_of(user) == VIEWER and not user.is_staff
    set_role(user, ADMIN)
    user.refresh_from_db()
    assert user.is_staff and user.has_perm("auth.change_user")
    set_role(user, VIEWER)
    user = get_user_model().objects.get(pk=user.pk)  # no cached permissions
    assert not user.is_staff and not user.has_perm("auth.change_user")
    with pytest.raises(ValueError, match="unknown role"):
        set_role(user, "root")


def test_ensureadmin_makes_the_first_admin(monkeypatch):
    monkeypatch.setenv("PORTOLAN_ADMIN_PASSWORD", PASSWORD)
    call_command("ensureadmin", "--username", "first")
    first = get_user_model().objects.get(username="first")
    assert first.is_superuser and first.is_staff and role_of(first) == ADMIN
    assert logged_in(first).get("/admin/auth/user/").status_code == 200


def test_ensureadmin_keeps_a_password_the_admin_changed(monkeypatch):
    """Run at every start with PORTOLAN_ADMIN_PASSWORD still set, it leaves the
    existing login's password alone; only ``--reset-password`` sets it again."""
    monkeypatch.setenv("PORTOLAN_ADMIN_PASSWORD", PASSWORD)
    call_command("ensureadmin", "--username", "first")
    first = get_user_model().objects.get(username="first")
    first.set_password("changed-by-the-admin-2")
    first.save()
    call_command("ensureadmin", "--username", "first")
    first.refresh_from_db()
    assert first.check_password("changed-by-the-admin-2")
    call_command("ensureadmin", "--username", "first", "--reset-password")
    first.refresh_from_db()
    assert first.check_password(PASSWORD)
    monkeypatch.delenv("PORTOLAN_ADMIN_PASSWORD")
    with pytest.raises(CommandError, match="needs PORTOLAN_ADMIN_PASSWORD"):
        call_command("ensureadmin", "--username", "first", "--reset-password")


# ------------------------------------------------------------------ sessions


def test_sessions_end_after_the_idle_time(settings, live_redis):
    """Each request moves the session's end on by the idle time; past it, the
    login is asked again (on the session store's own clock: its end is moved
    back rather than waited for)."""
    settings.SESSION_COOKIE_AGE = 600
    client = logged_in(make_user("vic"))
    session = Session.objects.filter(pk=client.session.session_key)
    for _ in range(3):  # about to end, each request renews it
        session.update(expire_date=timezone.now() + timedelta(seconds=5))
        assert client.get("/").status_code == 200
        left = session.get().expire_date - timezone.now()
        assert left > timedelta(seconds=500), left
    session.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert client.get("/")["Location"].startswith("/login/")
    assert client.get("/api/graph/").status_code == 401


def test_password_change_logs_out_every_other_session(live_redis):
    user = make_user("wes")
    here, elsewhere = logged_in(user), logged_in(user)
    assert elsewhere.get("/").status_code == 200
    new = "new-pw-for-tests-2"
    changed = here.post("/account/password/", {
        "old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert changed.status_code == 302
    assert here.get("/").status_code == 200  # this session stays
    assert elsewhere.get("/")["Location"].startswith("/login/")
    assert elsewhere.get("/api/graph/").status_code == 401


# ------------------------------------------------------------------ socket


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("role", "accepted"), [(VIEWER, True), (None, False)])
async def test_the_socket_asks_for_the_map_permission(settings, redis_server,
                                                      role, accepted):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from webapp.asgi import application

    settings.REDIS_URL = redis_server.url
    settings.CHANNEL_LAYERS = channel_layers(redis_server.url, "portolan-sec")

    def session_cookie() -> bytes:
        client = logged_in(make_user(f"sock-{role}", role))
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    cookie = await sync_to_async(session_cookie)()
    comm = WebsocketCommunicator(
        application, "/ws/topology/?level=host",
        headers=[(b"origin", b"http://localhost"), (b"host", b"localhost"),
                 (b"cookie", cookie)])
    connected, _ = await comm.connect(timeout=5)
    assert connected == accepted
    if connected:
        await comm.disconnect()
