"""Stripe resource families served by the emulator; each module exposes ``ROUTES``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Handler = Callable[..., Any]
Route = tuple[str, str, Handler]
