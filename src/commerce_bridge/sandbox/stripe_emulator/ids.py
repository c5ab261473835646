"""Stripe-looking object ids (``pi_3Q…``), client secrets and request ids."""

from __future__ import annotations

import os
import string

_ALPHABET = (string.ascii_letters + string.digits).encode()
# byte -> alphanumeric character; 256 % 62 leaves a slight bias, irrelevant for ids and test secrets
_TABLE = bytes(_ALPHABET[i % len(_ALPHABET)] for i in range(256))


def _random_text(length: int) -> str:
    return os.urandom(length).translate(_TABLE).decode()


def new_id(prefix: str, length: int = 24) -> str:
    """A new id such as ``pi_1Px9…`` (``prefix`` without the underscore)."""
    return prefix + "_1" + _random_text(length - 1)


def secret(length: int = 25) -> str:
    """Random alphanumeric text for client secrets and webhook secrets."""
    return _random_text(length)


def request_id() -> str:
    return "req_" + _random_text(14)
