"""The security model: tokens for writes (and reads once set), sessions, CSRF, origin,
read-only mode, loopback-only without a token, and refusing to bind in the open."""

from __future__ import annotations

import html
import re

import pytest
from starlette.testclient import TestClient

from backbeat import Client, JobState
from backbeat.errors import ConfigError
from backbeat.web import create_app
from backbeat.web.security import SESSION_COOKIE, check_bind, is_loopback
from tests.web.conftest import LOOPBACK, TOKEN, Store, login


def csrf_of(page: str, action: str) -> str:
    """The CSRF token of the form posting to ``action`` on ``page``."""
    for form in re.findall(r'<form method="post" action="([^"]*)"[^>]*>(.*?)</form>', page, re.S):
        if html.unescape(form[0]) == action:
            match = re.search(r'name="csrf" value="([^"]*)"', form[1])
            assert match, form
            return html.unescape(match.group(1))
    raise AssertionError(f"no form posts to {action}")


def state_of(store: Store, key: str) -> JobState:
    client = Client(store.url)
    try:
        return client.job(store.ids[key]).status()
    finally:
        client.close()


def test_reads_need_the_token_once_one_is_set(web: TestClient) -> None:
    assert web.get("/api/status").status_code == 401
    assert web.get("/api/status").headers["www-authenticate"].startswith("Bearer")
    assert web.get("/metrics").status_code == 401
    page = web.get("/jobs?state=dead", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fjobs%3Fstate%3Ddead"
    wrong = web.get("/api/status", headers={"Authorization": "Bearer " + TOKEN[:-1] + "x"})
    assert wrong.status_code == 401
    assert web.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    # open to all: health for load balancers, the API description
    assert web.get("/healthz").status_code == 200
    assert web.get("/api/openapi.json").status_code == 200


def test_api_writes_need_the_bearer_token_not_a_session(web: TestClient, store: Store) -> None:
    login(web)  # a session cookie does not authorise API writes (a browser would send it)
    refused = web.post(f"/api/jobs/{store.ids['dead']}/retry")
    assert refused.status_code == 401 and "Bearer" in refused.json()["error"]
    assert state_of(store, "dead") is JobState.DEAD
    done = web.post(f"/api/jobs/{store.ids['dead']}/retry", headers={"Authorization": f"Bearer {TOKEN}"})
    assert done.json() == {"id": store.ids["dead"], "state": "queued"}
    assert state_of(store, "dead") is JobState.QUEUED


def test_login_sets_a_strict_httponly_cookie_and_a_wrong_token_is_refused(web: TestClient) -> None:
    wrong = web.post("/login", data={"token": "nope", "next": "/"}, follow_redirects=False)
    assert wrong.status_code == 401 and "That is not the token." in wrong.text
    ok = web.post("/login", data={"token": TOKEN, "next": "/queues"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/queues"
    cookie = ok.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
    assert web.get("/queues").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_login_never_redirects_off_site(web: TestClient, target: str) -> None:
    response = web.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
    assert response.headers["location"] == "/"


def test_a_tampered_session_is_no_session(web: TestClient) -> None:
    login(web)
    issued, nonce, mac = web.cookies[SESSION_COOKIE].split(".")
    assert web.get("/api/status").status_code == 200
    for forged in (f"{int(issued) + 10**6}.{nonce}.{mac}", f"{issued}.{nonce}x.{mac}", f"{issued}.{nonce}", "junk"):
        web.cookies.clear()
        web.cookies.set(SESSION_COOKIE, forged)
        assert web.get("/api/status").status_code == 401, forged


def test_forms_need_a_session_a_csrf_token_and_our_origin(web: TestClient, store: Store) -> None:
    action = f"/jobs/{store.ids['dead']}/retry"
    no_session = web.post(action, data={"csrf": "x", "next": "/jobs"}, follow_redirects=False)
    assert no_session.status_code == 303 and no_session.headers["location"].startswith("/login")
    login(web)
    page = web.get("/jobs?state=dead").text
    token = csrf_of(page, action)
    assert web.post(action, data={"next": "/jobs"}).status_code == 403  # no CSRF token
    other_form = csrf_of(page, "/logout")
    assert web.post(action, data={"csrf": other_form, "next": "/jobs"}).status_code == 403  # another form's
    cross = web.post(action, data={"csrf": token}, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403 and "another origin" in cross.text
    assert state_of(store, "dead") is JobState.DEAD
    done = web.post(action, data={"csrf": token, "next": "/jobs?state=dead"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/jobs?state=dead"
    assert state_of(store, "dead") is JobState.QUEUED
    assert "is queued again" in web.get("/jobs?state=dead").text  # the flash message


def test_without_a_token_nothing_is_written_and_only_this_machine_reads(store: Store) -> None:
    app = create_app(store.url, token=None, metrics_dir=None)
    with TestClient(app, client=LOOPBACK) as local:
        assert local.get("/api/status").status_code == 200
        page = local.get("/jobs?state=dead").text
        assert "view only" in page and f"/jobs/{store.ids['dead']}/retry" not in page
        refused = local.post(f"/api/jobs/{store.ids['dead']}/retry", headers={"Authorization": "Bearer anything"})
        assert refused.status_code == 403 and "no BACKBEAT_TOKEN" in refused.json()["error"]
    with TestClient(app, client=("192.0.2.7", 50000)) as remote:
        assert remote.get("/api/status").status_code == 403
        assert remote.get("/jobs", follow_redirects=False).status_code == 403
    assert state_of(store, "dead") is JobState.DEAD


def test_read_only_hides_and_refuses_every_action(store: Store) -> None:
    with TestClient(create_app(store.url, token=TOKEN, read_only=True, metrics_dir=None), client=LOOPBACK) as web:
        login(web)
        page = web.get("/jobs").text
        assert "read-only" in page and "/retry" not in page and "/cancel" not in page
        assert "/pause" not in web.get("/queues").text
        refused = web.post(f"/api/jobs/{store.ids['dead']}/retry", headers={"Authorization": f"Bearer {TOKEN}"})
        assert refused.status_code == 403 and "read-only" in refused.json()["error"]
        assert web.post("/queues/default/pause", data={"csrf": "x"}).status_code == 403
    assert state_of(store, "dead") is JobState.DEAD


def test_security_headers_on_every_response(web: TestClient) -> None:
    for path in ("/login", "/api/openapi.json", "/healthz"):
        headers = web.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["cache-control"] == "no-store"
    assert "no-store" not in web.get("/static/app.js").headers.get("cache-control", "")


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("::1", True), ("[::1]", True),
                                                ("localhost", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                                ("example.com", False)])  # fmt: skip
def test_binding_off_loopback_needs_a_token(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    check_bind(host, TOKEN)
    if loopback:
        check_bind(host, None)
    else:
        with pytest.raises(ConfigError, match=f"refusing to listen on {re.escape(host)} without BACKBEAT_TOKEN"):
            check_bind(host, None)


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 16 characters"):
        create_app("memory://", token="short")
