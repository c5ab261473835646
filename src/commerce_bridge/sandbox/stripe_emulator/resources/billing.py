"""Subscriptions, invoices and test clocks (placeholder until filled in)."""

from __future__ import annotations

from ..errors import invalid_request
from ..forms import Params
from ..state import Emulator
from ..store import Obj
from . import Route


def advance_clock(emu: Emulator, p: Params, cid: str) -> Obj:
    raise invalid_request("test clocks not implemented yet")


ROUTES: list[Route] = []
