"""``/login`` and ``/logout``: the token buys a session cookie (HttpOnly, SameSite=Strict)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from backbeat.errors import BackbeatError
from backbeat.web.context import dashboard
from backbeat.web.pages.common import error_page, local_target, path_for, render, root
from backbeat.web.security import SESSION_COOKIE, check_origin, read_form


async def login_form(request: Request) -> Response:
    return render(request, "login.html", page="login", next=local_target(request, request.query_params.get("next")))


async def login(request: Request) -> Response:
    d = dashboard(request)
    try:
        check_origin(request)
        form = await read_form(request)
    except BackbeatError as exc:
        return error_page(request, exc)
    target = local_target(request, form.get("next"))
    if not d.guard.login_required:
        return RedirectResponse(target, status_code=303)
    if not d.guard.token_ok(form.get("token", "")):
        return render(request, "login.html", http_status=401, page="login", next=target, wrong=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        d.guard.new_session(d.now()),
        max_age=int(d.settings.session_seconds),
        path=root(request) or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def logout(request: Request) -> Response:
    d = dashboard(request)
    try:
        d.guard.check_form(request, await read_form(request), d.now())
    except BackbeatError as exc:
        return error_page(request, exc)
    response = RedirectResponse(path_for(request, "login"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=root(request) or "/")
    return response


ROUTES = [
    Route("/login", login_form, methods=["GET"], name="login_form"),
    Route("/login", login, methods=["POST"], name="login"),
    Route("/logout", logout, methods=["POST"], name="logout"),
]
