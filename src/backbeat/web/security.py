"""Who may read and who may write over HTTP (docs/dashboard.md says the same for users).

* **Writes** (every ``POST`` of the API, every dashboard action) need ``BACKBEAT_TOKEN``.
  The API takes ``Authorization: Bearer <token>`` and nothing else, so a browser cannot
  be tricked into sending it. The pages take a session cookie from ``/login``
  (HttpOnly, SameSite=Strict) plus a CSRF token in every form, and refuse a form posted
  from another origin. With no token configured nothing can be written over HTTP;
  ``read_only`` refuses writes whatever the token.
* **Reads** need the token too (bearer or session) once one is configured. Without one,
  only clients connecting from this machine (loopback, or a Unix socket) are served;
  ``backbeat dashboard`` also refuses to listen on a non-loopback address without one.
* ``/healthz`` and ``/api/openapi.json`` are open: they show no job data.

Sessions are stateless: the cookie is ``<issued>.<nonce>.<mac>``, the mac an HMAC-SHA256
under a key derived from the token, so changing the token ends every session and any
number of dashboard replicas accept each other's cookies. A CSRF token is the HMAC of
the session's nonce and the form's action path: it is good for that one form in that
one session. Every comparison of a secret is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from starlette.requests import Request

from backbeat.errors import ConfigError
from backbeat.web.errors import BadRequest, Forbidden, Unauthorized
from backbeat.web.settings import DashboardSettings

SESSION_COOKIE = "backbeat_session"
FLASH_COOKIE = "backbeat_flash"
MAX_FORM_BYTES = 16 * 1024
CLOCK_SKEW = 300.0
"""Seconds a session may appear issued in the future (replicas whose clocks disagree)."""


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (an address or ``localhost``) is this machine only. ``None`` is a
    Unix-socket peer, which is local too."""
    if host is None:
        return True
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve a non-loopback address without a token (Flower's mistake)."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without BACKBEAT_TOKEN: anyone who can reach it could read every "
            "job's arguments; set BACKBEAT_TOKEN (docs/dashboard.md) or use --host 127.0.0.1"
        )


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "|".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    def __init__(self, settings: DashboardSettings) -> None:
        self.token = settings.token
        self.read_only = settings.read_only
        self.session_seconds = settings.session_seconds
        self._key = (
            None
            if self.token is None
            else hmac.new(self.token.encode(), b"backbeat dashboard sessions v1", hashlib.sha256).digest()
        )

    @property
    def writes_enabled(self) -> bool:
        return self.token is not None and not self.read_only

    @property
    def login_required(self) -> bool:
        return self.token is not None

    # -- credentials -------------------------------------------------------------------

    def token_ok(self, given: str) -> bool:
        return self.token is not None and _same(given, self.token)

    def bearer_ok(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_ok(value.strip())

    def new_session(self, now: float) -> str:
        assert self._key is not None, "sessions need a token"
        issued, nonce = str(int(now)), secrets.token_urlsafe(16)
        return f"{issued}.{nonce}.{_mac(self._key, 'session', issued, nonce)}"

    def session(self, request: Request, now: float) -> str | None:
        """The nonce of the request's session if its cookie is genuine and current."""
        if self._key is None:
            return None
        parts = request.cookies.get(SESSION_COOKIE, "").split(".")
        if len(parts) != 3:
            return None
        issued, nonce, mac = parts
        if not issued.isdigit() or not _same(mac, _mac(self._key, "session", issued, nonce)):
            return None
        age = now - int(issued)
        return nonce if -CLOCK_SKEW <= age <= self.session_seconds else None

    def csrf_token(self, nonce: str, action: str) -> str:
        """For the form posting to ``action``: a path as a page writes it (percent-encoded)
        or as a request carries it (decoded); both give the same token."""
        assert self._key is not None
        return _mac(self._key, "csrf", nonce, quote(unquote(action), safe="/"))

    def sign(self, text: str) -> str:
        """``text`` with a mac, for the flash cookie (a sibling subdomain can set cookies)."""
        return f"{_mac(self._key, 'flash', text)}.{text}" if self._key is not None else ""

    def unsign(self, value: str) -> str | None:
        mac, _, text = value.partition(".")
        if self._key is None or not _same(mac, _mac(self._key, "flash", text)):
            return None
        return text

    # -- the checks ------------------------------------------------------------------

    def check_read(self, request: Request, now: float) -> None:
        if self.token is None:
            host = request.client.host if request.client else None
            if not is_loopback(host):
                raise Forbidden(
                    "no BACKBEAT_TOKEN is configured, so only clients on this machine are served; "
                    "set one to serve others"
                )
            return
        if not (self.bearer_ok(request) or self.session(request, now)):
            raise Unauthorized("this dashboard needs BACKBEAT_TOKEN: send 'Authorization: Bearer <token>' or log in")

    def check_writable(self) -> None:
        if self.read_only:
            raise Forbidden("this dashboard is read-only")
        if self.token is None:
            raise Forbidden("writes are disabled: no BACKBEAT_TOKEN is configured")

    def check_api_write(self, request: Request) -> None:
        self.check_writable()
        if not self.bearer_ok(request):
            raise Unauthorized("writes need 'Authorization: Bearer <BACKBEAT_TOKEN>'")

    def check_form_write(self, request: Request, form: dict[str, str], now: float) -> None:
        self.check_writable()
        self.check_form(request, form, now)

    def check_form(self, request: Request, form: dict[str, str], now: float) -> None:
        """A form posted by this session from one of our pages (logout needs no more)."""
        check_origin(request)
        nonce = self.session(request, now)
        if nonce is None:
            raise Unauthorized("log in to act on jobs and queues")
        if not _same(form.get("csrf", ""), self.csrf_token(nonce, request.url.path)):
            raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")


def check_origin(request: Request) -> None:
    """Refuse a form posted from another site (defence in depth beside SameSite and CSRF)."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("a form posted from another origin was refused")


async def read_form(request: Request) -> dict[str, str]:
    """An URL-encoded form body, at most ``MAX_FORM_BYTES`` (the dashboard's forms are small)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise BadRequest(f"form body over {MAX_FORM_BYTES} bytes")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form body is not URL-encoded UTF-8") from None
