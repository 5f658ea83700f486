"""``DashboardSettings``: everything the web app runs with, validated once."""

from __future__ import annotations

from dataclasses import dataclass

from backbeat.errors import ConfigError

MIN_TOKEN_LENGTH = 16
MAX_PAGE = 500
"""Most jobs one list page or API call returns (capped server-side, whatever is asked)."""
MAX_BULK = 1000
"""Most dead jobs one bulk retry requeues; call again for more."""


def check_token(token: str | None) -> str | None:
    """The token, or ``None`` for none; a short one is refused (it guards every write)."""
    if token is None or token == "":
        return None
    if not isinstance(token, str) or token != token.strip() or len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"BACKBEAT_TOKEN must be at least {MIN_TOKEN_LENGTH} characters without surrounding spaces; "
            "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token


@dataclass(frozen=True, kw_only=True, slots=True)
class DashboardSettings:
    token: str | None = None
    """``BACKBEAT_TOKEN``: needed for every write; for reads too when set."""
    read_only: bool = False
    """Hide every action and refuse every write, whatever the token."""
    poll_seconds: float = 5.0
    """How often open pages refresh from the JSON API (at least 1 s)."""
    metrics_dir: str | None = None
    """A prometheus-client multiprocess directory whose worker metrics ``/metrics`` adds."""
    session_seconds: float = 12 * 3600.0
    """How long a login lasts."""

    def __post_init__(self) -> None:
        check_token(self.token)
        if not self.poll_seconds >= 1.0:
            raise ConfigError(f"poll_seconds must be at least 1, got {self.poll_seconds!r}")
        if not self.session_seconds > 0:
            raise ConfigError(f"session_seconds must be positive, got {self.session_seconds!r}")
