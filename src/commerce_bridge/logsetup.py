"""Logging set-up: structlog JSON lines for our code and stdlib loggers, run context, and redaction.

``configure_logging()`` is called once at start-up. Afterwards both ``structlog.get_logger()``
and plain ``logging.getLogger()`` (uvicorn, dbos, sqlalchemy, httpx...) write one JSON object per
line with ``timestamp`` (ISO 8601, UTC), ``level``, ``event``, ``logger``, the bound run context
(``source``, ``event_id``, ``run_id``, ``step_id``) and any other fields.

The :class:`Redactor` runs last before rendering, on every line from either source. It removes

* secrets: the value of any key matching ``password|passwd|secret|token|api_key|apikey|
  authorization|cookie|signature|whsec|private_key`` (case-insensitive), and inside any string:
  Stripe keys (``sk_test_…``, ``sk_live_…``, ``rk_…``, ``whsec_…``), ``Bearer``/``Basic``
  credentials, passwords in URLs (``scheme://user:PASSWORD@host``) and ``key=value`` /
  ``"key": "value"`` pairs whose key is secret-like;
* card-like numbers: 13-19 digits, optionally separated by single spaces or dashes, that pass the
  Luhn check become ``[CARD]`` (also for ``int`` values);
* e-mail addresses become ``[EMAIL]``;
* configured PII keys (``pii_keys``, e.g. ``phone``, ``name``, ``address_line1``): their values
  become ``[REDACTED]``, both as structured fields and as ``key=value`` pairs inside strings;

recursively through dicts, lists and tuples, in the event message and in exception tracebacks.
"""

from __future__ import annotations

import datetime as _dt
import enum
import logging
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, reset_contextvars
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "CARD",
    "EMAIL",
    "REDACTED",
    "SECRET",
    "Redactor",
    "bind_run_context",
    "configure_logging",
    "get_logger",
    "log_context",
    "luhn_valid",
    "reset_run_context",
]

REDACTED = "[REDACTED]"
SECRET = "[SECRET]"
CARD = "[CARD]"
EMAIL = "[EMAIL]"

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
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}"
)
_CARD_RE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")
_SEPARATOR_RE = re.compile(r"[ -]")

# Fields written by the pipeline itself: nothing to redact, skip the work.
_TRUSTED_KEYS = frozenset({"timestamp", "level", "logger"})


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


class Redactor:
    """Removes secrets, card numbers, e-mail addresses and configured PII from log data.

    Use it as a structlog processor (it is one) or call :meth:`redact` on any value.

    Parameters
    ----------
    pii_keys:
        Field names whose values are personal data (matched case-insensitively, exactly).
    """

    def __init__(self, pii_keys: Iterable[str] = ()) -> None:
        self.pii_keys = frozenset(k.strip().lower() for k in pii_keys if k.strip())
        # Keys start at a token boundary (the lookbehind keeps long tokens from costing O(n²)).
        alternatives = [rf"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{{0,40}}?(?:{_SECRET_WORDS})[A-Za-z0-9_-]{{0,40}}"]
        if self.pii_keys:
            alternatives.append(r"\b(?:" + "|".join(re.escape(k) for k in sorted(self.pii_keys)) + r")\b")
        self._pair_re = re.compile(
            r"(?P<k>" + "|".join(alternatives) + r")(?P<q1>['\"]?)(?P<sep>\s*[:=]\s*)"
            r"(?:(?P<q2>['\"])(?P<qv>[^'\"]*)(?P=q2)|\[[^\]\s]*\]|(?P<v>[^\s,;&'\"})\]]+))",
            re.IGNORECASE,
        )
        # Substrings (lower case) without which the pair/credential patterns cannot match; plain
        # ``in`` checks are several times faster than one case-insensitive alternation.
        self._triggers = (*_TRIGGER_WORDS, *sorted(self.pii_keys))
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
            verdict = key.lower() in self.pii_keys or _SECRET_KEY_RE.search(key) is not None
            if len(self._key_cache) > 4096:
                self._key_cache.clear()
            self._key_cache[key] = verdict
        return verdict

    def redact(self, value: Any) -> Any:
        """A copy of ``value`` with everything sensitive replaced (containers become dict/list)."""
        if isinstance(value, str):
            return self.redact_text(value)
        if value is None or isinstance(value, bool | float):
            return value
        if isinstance(value, int):
            if 10**12 <= abs(value) < 10**19 and luhn_valid(str(abs(value))):
                return CARD
            return value
        if isinstance(value, Mapping):
            return {
                k: (REDACTED if isinstance(k, str) and self.is_sensitive_key(k) else self.redact(v))
                for k, v in value.items()
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v) for v in value]
        if isinstance(value, _dt.datetime | _dt.date):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return self.redact(value.value)
        # Anything else would be rendered through str()/repr(): redact that text.
        return self.redact_text(str(value))

    def redact_text(self, text: str) -> str:
        """``text`` with secrets, secret-like pairs, PII pairs, e-mails and card numbers replaced."""
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
        if "@" in text:
            text = _EMAIL_RE.sub(EMAIL, text)
        return _CARD_RE.sub(_card_replacement, text)

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


# -- configuration ----------------------------------------------------------------------------------

_HANDLER_MARK = "_commerce_bridge_handler"

# stdlib loggers of our dependencies: drop their own handlers so records reach our root handler;
# a level here overrides the root level for that logger (None: inherit).
_ROUTED_LOGGERS: dict[str, str | None] = {
    "uvicorn": None,
    "uvicorn.error": None,
    "uvicorn.access": None,
    "dbos": None,
    "sqlalchemy": "WARNING",  # INFO would log every SQL statement
    "httpx": "WARNING",  # INFO logs every request URL
    "httpcore": "WARNING",
    "py.warnings": None,
}


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def configure_logging(
    level: str | int = "INFO",
    json: bool = True,
    pii_keys: Iterable[str] = (),
    stream: IO[str] | None = None,
    *,
    capture_warnings: bool = True,
) -> Redactor:
    """Route structlog and stdlib logging through one renderer with redaction.

    Parameters
    ----------
    level:
        Minimum level (name or number) for the root logger (``CB_LOG_LEVEL``).
    json:
        One JSON object per line (``CB_LOG_JSON``); ``False`` gives plain key=value console lines.
    pii_keys:
        Field names whose values are personal data (``CB_LOG_PII_KEYS``).
    stream:
        Where lines go (default ``sys.stderr``).
    capture_warnings:
        Also route ``warnings.warn`` output through logging (logger ``py.warnings``).

    Returns
    -------
    Redactor
        The redactor in use, for other code that must scrub data the same way (alerts).

    Raises
    ------
    ValueError
        For an unknown level name.
    """
    number = _level_number(level)
    redactor = Redactor(pii_keys)

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(default=str)
        if json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redactor,  # last before rendering, for both structlog and stdlib records
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(number)

    for name, forced in _ROUTED_LOGGERS.items():
        lg = logging.getLogger(name)
        for old in list(lg.handlers):
            lg.removeHandler(old)
        lg.propagate = True
        lg.setLevel(_level_number(forced) if forced else logging.NOTSET)
    logging.captureWarnings(capture_warnings)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return redactor


def get_logger(name: str | None = None) -> Any:
    """A structlog logger (after :func:`configure_logging`, it writes through the shared handler)."""
    return structlog.stdlib.get_logger(name)


# -- run context ------------------------------------------------------------------------------------


def bind_run_context(
    *,
    source: str | None = None,
    event_id: str | None = None,
    run_id: str | None = None,
    step_id: str | None = None,
    **extra: Any,
) -> Mapping[str, Any]:
    """Bind context fields (``None`` ones are skipped) to every later line of this task/thread.

    Returns the tokens to pass to :func:`reset_run_context`. Context lives in ``contextvars``:
    asyncio tasks inherit it, new threads start without it.
    """
    fields = {"source": source, "event_id": event_id, "run_id": run_id, "step_id": step_id, **extra}
    return bind_contextvars(**{k: v for k, v in fields.items() if v is not None})


def reset_run_context(tokens: Mapping[str, Any]) -> None:
    """Undo one :func:`bind_run_context`."""
    reset_contextvars(**tokens)


@contextmanager
def log_context(**kw: Any) -> Iterator[None]:
    """Bind fields (``None`` ones are skipped) for the lines logged inside the ``with`` block."""
    with bound_contextvars(**{k: v for k, v in kw.items() if v is not None}):
        yield
