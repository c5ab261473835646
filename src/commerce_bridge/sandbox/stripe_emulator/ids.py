"""Stripe-looking object ids (``pi_3Q…``), client secrets and request ids."""

from __future__ import annotations

import random
import string

_ALPHABET = string.ascii_letters + string.digits
_rng = random.SystemRandom()
_fast = random.Random(_rng.getrandbits(64))


def new_id(prefix: str, length: int = 24) -> str:
    """A new id such as ``pi_1Px9…`` (``prefix`` without the underscore)."""
    return prefix + "_1" + "".join(_fast.choices(_ALPHABET, k=length - 1))


def secret(length: int = 25) -> str:
    """Random alphanumeric text for client secrets and webhook secrets."""
    return "".join(_rng.choices(_ALPHABET, k=length))


def request_id() -> str:
    return "req_" + "".join(_fast.choices(_ALPHABET, k=14))
