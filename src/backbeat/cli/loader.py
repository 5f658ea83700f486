"""Loading ``APP`` (``module:attribute``, like uvicorn) and building settings for a command."""

from __future__ import annotations

import importlib
import os
import sys

from backbeat.app import App
from backbeat.config import Settings
from backbeat.errors import ConfigError


def load_app(ref: str, url: str | None = None) -> App:
    """Import ``module:attribute`` (attribute default ``app``) from the current directory;
    ``url`` (``--url``) replaces the store the code names."""
    module_name, _, attribute = ref.partition(":")
    attribute = attribute or "app"
    if not module_name:
        raise ConfigError(f"APP {ref!r} is malformed: expected module:attribute, e.g. myproject.jobs:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r} for APP {ref!r}: {exc}") from None
    app = module
    for part in attribute.split("."):
        if not hasattr(app, part):
            raise ConfigError(f"module {module_name!r} has no attribute {attribute!r} (APP {ref!r})")
        app = getattr(app, part)
    if not isinstance(app, App):
        raise ConfigError(f"APP {ref!r} is a {type(app).__name__}, not a backbeat App")
    if url is not None:
        app.configure(url=url)
    return app


def app_for(app_ref: str | None, url: str | None) -> App:
    """The app ``--app`` names, else a bare one on the store (``--url``, ``BACKBEAT_URL``)."""
    return load_app(app_ref, url) if app_ref else App(Settings.build(url).url)
