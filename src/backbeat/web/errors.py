"""HTTP errors of the dashboard and API, under the one ``BackbeatError`` root.

Each carries its HTTP status. Errors from the rest of backbeat map to a status in
``status_of`` (a missing job is 404, a retry of a running job 409, a store that cannot be
reached 503). The API answers ``{"error": "<one line>"}``; the pages show the same line.
"""

from __future__ import annotations

from backbeat.errors import BackbeatError, ConfigError, InvalidTransition, SecretError, StoreError


class WebError(BackbeatError):
    status = 400


class BadRequest(WebError, ValueError):
    """A parameter or body the API cannot use: the message names it."""

    status = 400


class Unauthorized(WebError):
    """No valid token (API: bearer header; pages: a session from /login)."""

    status = 401


class Forbidden(WebError):
    """Authenticated or not, this is not allowed: read-only mode, writes without a
    configured token, a failed CSRF or origin check, reads from off-host without a token."""

    status = 403


class TooLarge(WebError):
    """A body over the size limit (the message names the limit)."""

    status = 413


def status_of(exc: BackbeatError) -> int:
    if isinstance(exc, WebError):
        return exc.status
    if isinstance(exc, LookupError):  # JobNotFound, TaskNotFound, ...
        return 404
    if isinstance(exc, InvalidTransition):
        return 409
    if isinstance(exc, StoreError):
        return 503
    if isinstance(exc, SecretError):  # a key the server lacks: its configuration, not the request
        return 500
    if isinstance(exc, ConfigError | ValueError):
        return 400
    return 500
