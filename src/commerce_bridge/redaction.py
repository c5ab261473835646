"""The redactor: secrets, card numbers, e-mails, phones and PII keys out of anything shown.

Used for every log line (``logsetup``) and for what the admin API and the CLI show of stored data.
The :class:`Redactor` removes

* secrets: the value of any key matching ``password|passwd|secret|token|api_key|apikey|
  authorization|cookie|signature|whsec|private_key`` (case-insensitive), and inside any string:
  Stripe keys (``sk_test_…``, ``sk_live_…``, ``rk_…``, ``whsec_…``), ``Bearer``/``Basic``
  credentials, passwords in URLs (``scheme://user:PASSWORD@host``) and ``key=value`` /
  ``"key": "value"`` pairs whose key is secret-like (``?token=…`` in a URL too);
* card-like numbers: 13-19 digits, optionally separated by single spaces or dashes, that pass the
  Luhn check become ``[CARD]`` (also for ``int`` values);
* e-mail addresses (also URL-encoded, ``jane%40example.com``) become ``[EMAIL]``;
* international phone numbers (``+`` and 8-15 digits, optionally grouped) become ``[PHONE]``;
* configured PII keys (``pii_keys``, e.g. ``phone``, ``name``, ``street``): the values of fields
  named like them become ``[REDACTED]`` (``phone`` also covers ``Phone1``, ``customer_phone`` and
  ``shippingPhone``), both as structured fields and as ``key=value`` pairs inside strings;

recursively through dicts, lists and tuples (at most 32 levels deep). Each string field is cut to
``max_field_chars`` after redaction.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from collections.abc import Iterable, Mapping
from typing import Any

from structlog.types import EventDict, WrappedLogger

__all__ = ["CARD", "DEEP", "EMAIL", "PHONE", "REDACTED", "SECRET", "Redactor", "luhn_valid"]

REDACTED = "[REDACTED]"
SECRET = "[SECRET]"
CARD = "[CARD]"
EMAIL = "[EMAIL]"
PHONE = "[PHONE]"
DEEP = "[DEEP]"

MAX_DEPTH = 32  # containers nested deeper than this are logged as DEEP (no recursion limit in logging)

_SECRET_WORDS = (
    r"password|passwd|secret|token|api_?key|apikey|authorization|cookie|signature|whsec|private_?key"
)
_SECRET_KEY_RE = re.compile(_SECRET_WORDS, re.IGNORECASE)
_TRIGGER_WORDS = (
    "passw", "secret", "token", "apikey", "api_key", "authoriz", "cookie", "signature", "whsec",
    "private_key", "privatekey", "bearer", "basic",
)  # fmt: skip
_STRIPE_KEY_RE = re.compile(r"(?<![A-Za-z0-9])(?:(?:sk|rk)_(?:test|live)_[A-Za-z0-9]+|whsec_[A-Za-z0-9+/=]+)")
_AUTH_SCHEME_RE = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}", re.IGNORECASE)
_URL_PASSWORD_RE = re.compile(r"(://[^:/@\s]+):[^@/\s]+@")
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}(?:@|%40)[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"
)
_CARD_RE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_SEPARATOR_RE = re.compile(r"[ -]")
# "+" and a digit, then digits in groups split by single spaces, dots or dashes, or in parentheses:
# +1 415 555 0123, +44 (20) 7946-0958, +4712345678. The digit count (8-15, E.164) is checked after.
_PHONE_RE = re.compile(r"(?<![\w+])\+\d(?:[ .-]?(?:\(\d{1,4}\)|\d)){6,18}(?![\d(])")
_NON_DIGIT_RE = re.compile(r"\D")

# A field name as lower-case words joined by "_": "shippingPhone1" -> "shipping_phone1".
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_WORD_RE = re.compile(r"[^a-z0-9]+")
# Between two words of a PII key inside text: a separator, or a camelCase boundary (case-sensitive).
_WORD_JOIN = r"(?:[_.-]|(?-i:(?<=[a-z0-9])(?=[A-Z])))"

# Fields written by the pipeline itself: nothing to redact, skip the work.
_TRUSTED_KEYS = frozenset({"timestamp", "level", "logger"})


def _key_words(key: str) -> str:
    return _NON_WORD_RE.sub("_", _CAMEL_RE.sub("_", key).lower()).strip("_")


def luhn_valid(digits: str) -> bool:
    """Whether a string of decimal digits passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_replacement(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = _SEPARATOR_RE.sub("", text)
    if luhn_valid(digits):
        return CARD
    # A card may hide inside a longer separated run ("qty 1 4242 4242 4242 4242"): try each
    # window of whole groups, left to right.
    groups = _SEPARATOR_RE.split(text)
    if len(groups) == 1:
        return text
    seps = _SEPARATOR_RE.findall(text)
    out: list[str] = []
    i = 0
    while i < len(groups):
        hit = 0
        n = 0
        for j in range(i, len(groups)):
            n += len(groups[j])
            if n > 19:
                break
            if n >= 13 and luhn_valid("".join(groups[i : j + 1])):
                hit = j + 1
                break
        if hit:
            out.append(CARD)
            if hit < len(groups):
                out.append(seps[hit - 1])
            i = hit
        else:
            out.append(groups[i])
            if i < len(seps):
                out.append(seps[i])
            i += 1
    return "".join(out)


def _phone_replacement(match: re.Match[str]) -> str:
    text = match.group(0)
    return PHONE if 8 <= len(_NON_DIGIT_RE.sub("", text)) <= 15 else text


class Redactor:
    """Removes secrets, card numbers, e-mail addresses, phone numbers and configured PII from log data.

    Use it as a structlog processor (it is one) or call :meth:`redact` on any value.

    Parameters
    ----------
    pii_keys:
        Field names whose values are personal data, matched case-insensitively by words: ``phone``
        matches ``phone``, ``Phone1``, ``customer_phone`` and ``shippingPhone``; ``postal_code``
        matches ``PostalCode``; ``name`` does not match ``username``.
    max_chars:
        Longest string kept, per value, after redaction (``None``: no limit). A longer one keeps its
        beginning and its end with ``…[N chars cut]…`` between.
    """

    def __init__(self, pii_keys: Iterable[str] = (), *, max_chars: int | None = None) -> None:
        self.pii_keys = frozenset(_key_words(k) for k in pii_keys if _key_words(k))
        self.max_chars = max_chars
        # Keys start at a token boundary (the lookbehind keeps long tokens from costing O(n²)).
        alternatives = [rf"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{{0,40}}?(?:{_SECRET_WORDS})[A-Za-z0-9_-]{{0,40}}"]
        if self.pii_keys:
            # A whole token whose last words are a PII key, optionally followed by digits.
            words = "|".join(_WORD_JOIN.join(re.escape(w) for w in k.split("_")) for k in sorted(self.pii_keys))
            alternatives.append(
                r"(?<![A-Za-z0-9_.-])(?:[A-Za-z0-9_.-]{0,40}?(?:[_.-]|(?-i:[a-z0-9](?=[A-Z]))))?"
                rf"(?:{words})\d*(?![A-Za-z0-9_.-])"
            )
        self._pair_re = re.compile(
            r"(?P<k>" + "|".join(alternatives) + r")(?P<q1>['\"]?)(?P<sep>\s*[:=]\s*)"
            r"(?:(?P<q2>['\"])(?P<qv>[^'\"]*)(?P=q2)|\[[^\]\s]*\]|(?P<v>[^\s,;&'\"})\]]+))",
            re.IGNORECASE,
        )
        # Substrings (lower case) without which the pair/credential patterns cannot match; plain
        # ``in`` checks are several times faster than one case-insensitive alternation.
        self._triggers = (*_TRIGGER_WORDS, *sorted({max(k.split("_"), key=len) for k in self.pii_keys}))
        self._key_cache: dict[str, bool] = {}

    # -- processor ------------------------------------------------------------------------------

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in event_dict.items():
            if key in _TRUSTED_KEYS:
                continue
            if self.is_sensitive_key(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self.redact(value)
        return event_dict

    # -- API --------------------------------------------------------------------------------------

    def is_sensitive_key(self, key: str) -> bool:
        """Whether the value stored under ``key`` must be hidden entirely."""
        verdict = self._key_cache.get(key)
        if verdict is None:
            verdict = _SECRET_KEY_RE.search(key) is not None or self._is_pii_key(key)
            if len(self._key_cache) > 4096:
                self._key_cache.clear()
            self._key_cache[key] = verdict
        return verdict

    def _is_pii_key(self, key: str) -> bool:
        if not self.pii_keys:
            return False
        words = _key_words(key)
        bare = words.rstrip("0123456789").rstrip("_")
        for candidate in {words, bare}:
            if candidate in self.pii_keys:
                return True
            for pii in self.pii_keys:
                if candidate.endswith("_" + pii):
                    return True
        return False

    def redact(self, value: Any, _depth: int = 0) -> Any:
        """A copy of ``value`` with everything sensitive replaced (containers become dict/list)."""
        if isinstance(value, str):
            return self._clip(self.redact_text(value))
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            if 10**12 <= abs(value) < 10**19 and luhn_valid(str(abs(value))):
                return CARD
            return value
        if isinstance(value, Mapping | list | tuple | set | frozenset) and _depth >= MAX_DEPTH:
            return DEEP
        if isinstance(value, Mapping):
            return {
                k: (REDACTED if isinstance(k, str) and self.is_sensitive_key(k) else self.redact(v, _depth + 1))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v, _depth + 1) for v in value]
        if isinstance(value, _dt.datetime | _dt.date):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return self.redact(value.value, _depth + 1)
        # Anything else would be rendered through str()/repr(): redact that text.
        try:
            text = str(value)
        except Exception as exc:  # a broken __str__ must not break the log line
            text = f"<unprintable {type(value).__name__}: {type(exc).__name__}>"
        return self._clip(self.redact_text(text))

    def redact_text(self, text: str) -> str:
        """``text`` with secrets, secret-like pairs, PII pairs, e-mails, phones and card numbers replaced."""
        if len(text) < 6:  # too short for any pattern below
            return text
        # One cheap search decides whether the costlier pair/credential patterns can match at all.
        if self._triggered(text):
            text = _AUTH_SCHEME_RE.sub(rf"\1 {REDACTED}", text)  # before pairs: "Authorization: Bearer x"
            if "=" in text or ":" in text:
                text = self._pair_re.sub(self._pair_replacement, text)
        if "://" in text:
            text = _URL_PASSWORD_RE.sub(rf"\1:{REDACTED}@", text)
        if "_" in text:
            text = _STRIPE_KEY_RE.sub(SECRET, text)
        if "@" in text or "%40" in text:
            text = _EMAIL_RE.sub(EMAIL, text)
        if "+" in text:
            text = _PHONE_RE.sub(_phone_replacement, text)
        return _CARD_RE.sub(_card_replacement, text)

    def _clip(self, text: str) -> str:
        limit = self.max_chars
        if limit is None or len(text) <= limit:
            return text
        head, tail = limit * 3 // 4, limit // 4
        return f"{text[:head]}…[{len(text) - head - tail} chars cut]…{text[len(text) - tail:]}"

    def _triggered(self, text: str) -> bool:
        low = text.lower()
        for word in self._triggers:  # noqa: SIM110 (a plain loop is faster than any() here)
            if word in low:
                return True
        return False

    @staticmethod
    def _pair_replacement(m: re.Match[str]) -> str:
        q2 = m.group("q2") or ""
        return f"{m.group('k')}{m.group('q1')}{m.group('sep')}{q2}{REDACTED}{q2}"
