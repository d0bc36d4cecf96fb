"""Read settings from the environment, failing loudly when one is missing.

Production must never fall back to a made-up secret or database, so a value
without a default is required: start-up stops with the variable's name.
"""
import os

from django.core.exceptions import ImproperlyConfigured

REQUIRED = object()


def env(name, default=REQUIRED):
    value = os.environ.get(name)
    if value is None or value == "":
        if default is REQUIRED:
            raise ImproperlyConfigured(
                f"The environment variable {name} is required but not set."
            )
        return default
    return value


def env_list(name, default=REQUIRED):
    """A comma-separated list; empty items are dropped."""
    raw = env(name, default=None)
    if raw is None:
        if default is REQUIRED:
            raise ImproperlyConfigured(
                f"The environment variable {name} is required but not set."
            )
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_int(name, default=REQUIRED):
    raw = env(name, default)
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(
            f"The environment variable {name} must be a whole number, got {raw!r}."
        ) from None


def env_bool(name, default=REQUIRED):
    raw = str(env(name, default)).strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(
        f"The environment variable {name} must be true or false, got {raw!r}."
    )
