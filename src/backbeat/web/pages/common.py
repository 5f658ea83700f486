"""Rendering (Jinja2, autoescaped, strict), and the guards every page and form goes through.

Everything a template shows is escaped by Jinja's autoescape: job arguments, errors,
queue and task names are user data. Nothing is marked safe; JSON is shown through the
``pretty`` filter, which returns plain text for autoescape to escape.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from backbeat.errors import BackbeatError
from backbeat.shapes import STATES
from backbeat.web.context import Dashboard, dashboard
from backbeat.web.errors import Unauthorized, status_of
from backbeat.web.security import FLASH_COOKIE, read_form

log = logging.getLogger("backbeat.web")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _when(value: str | None) -> str:
    """``2026-11-28T10:00:03.123456Z`` → ``2026-11-28 10:00:03``."""
    return "" if value is None else value.replace("T", " ")[:19]


def _seconds(value: float | None) -> str:
    """``42.5`` → ``42.5 s``, ``390`` → ``6.5 min``, ``7200`` → ``2 h`` (one decimal at most)."""
    if value is None:
        return ""
    for unit, size in (("h", 3600.0), ("min", 60.0)):
        if value >= 2 * size:
            return f"{round(value / size, 1):g} {unit}"
    return f"{round(value, 1):g} s"


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("backbeat.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["pretty"] = _pretty
_env.filters["when"] = _when
_env.filters["seconds"] = _seconds
TEMPLATES = Jinja2Templates(env=_env)

PageHandler = Callable[[Request, Dashboard], Awaitable[Response]]
ActionHandler = Callable[[Request, Dashboard, dict[str, str]], Awaitable[str]]
Endpoint = Callable[[Request], Awaitable[Response]]


def root(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def path_for(request: Request, name: str, /, **params: Any) -> str:
    """The path of a named route, with every parameter percent-encoded (a queue name may
    hold "/", "?" or "#"); the mount prefix included."""
    quoted = {k: quote(str(v), safe="") for k, v in params.items()}
    return request.url_for(name, **quoted).path


def local_target(request: Request, target: str | None) -> str:
    """``target`` if it is a path inside this app (no open redirect), else the overview."""
    prefix = root(request) + "/"
    if (
        target
        and target.startswith(prefix)
        and not target.startswith("//")
        and "\\" not in target
        and target.isprintable()
    ):
        return target
    return path_for(request, "overview")


def render(request: Request, template: str, *, http_status: int = 200, **context: Any) -> Response:
    d = dashboard(request)
    nonce = d.guard.session(request, d.now())
    flash = d.guard.unsign(unquote(request.cookies.get(FLASH_COOKIE, "")))
    context.setdefault("page", "")
    base = {
        "path": functools.partial(path_for, request),
        "static": lambda file: path_for(request, "static", path=file),
        "csrf": (lambda action: d.guard.csrf_token(nonce, action)) if nonce else (lambda action: ""),
        "can_write": d.guard.writes_enabled and nonce is not None,
        "read_only": d.settings.read_only,
        "login_required": d.guard.login_required,
        "logged_in": nonce is not None,
        "poll_ms": int(d.settings.poll_seconds * 1000),
        "flash": flash,
        "states": STATES,
        "here": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }
    response = TEMPLATES.TemplateResponse(request, template, base | context, status_code=http_status)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=root(request) or "/")
    return response


def login_redirect(request: Request) -> Response:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = path_for(request, "login") + "?next=" + quote(here, safe="")
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, exc: BackbeatError) -> Response:
    status = status_of(exc)
    if status >= 500 and status != 503:
        log.error("page request failed: %s", exc)
    return render(request, "error.html", http_status=status, status_code=status, message=str(exc))


def page(handler: PageHandler) -> Endpoint:
    """A page: readers only (a login redirect when a token is needed); errors as a page."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        d = dashboard(request)
        try:
            d.guard.check_read(request, d.now())
            return await handler(request, d)
        except Unauthorized:
            return login_redirect(request)
        except BackbeatError as exc:
            return error_page(request, exc)

    return run


def action(handler: ActionHandler) -> Endpoint:
    """A form POST: session, CSRF token, origin and read-only checked first; then back to
    the form's ``next`` page (303) with the handler's message as a signed flash."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        d = dashboard(request)
        try:
            form = await read_form(request)
            d.guard.check_form_write(request, form, d.now())
            message = await handler(request, d, form)
        except Unauthorized:
            return login_redirect(request)
        except BackbeatError as exc:
            return error_page(request, exc)
        return redirect_with_flash(request, local_target(request, form.get("next")), message)

    return run


def redirect_with_flash(request: Request, target: str, message: str) -> Response:
    d = dashboard(request)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        FLASH_COOKIE,
        quote(d.guard.sign(message), safe=""),
        max_age=60,
        path=root(request) or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response
