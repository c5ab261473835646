"""Logging set-up: every log line of the process as redacted JSON, run context, and the redactor.

``configure_logging()`` is called once at start-up. Afterwards both ``structlog.get_logger()``
and plain ``logging.getLogger()`` (uvicorn, dbos, sqlalchemy, alembic, psycopg, httpx, stripe,
asyncio...) write one JSON object per line through one root handler, with ``timestamp`` (ISO 8601,
UTC), ``level``, ``event``, ``logger``, the bound run context (``source``, ``event_id``,
``run_id``, ``step_id``) and any other fields. Handlers that libraries install on their own loggers
are removed (:func:`adopt_foreign_loggers`; call it again after a library configures its logging,
as DBOS does when it is constructed), and uncaught exceptions (main thread, other threads,
"Exception ignored in ...") and ``warnings`` are logged through the same handler instead of being
printed as plain text.

The :class:`Redactor` runs last before rendering, on every line from either source, including the
formatted traceback (``exception``). It removes

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
import json as _json
import logging
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, reset_contextvars
from structlog.types import EventDict, Processor, WrappedLogger

__all__ = [
    "CARD",
    "DEEP",
    "EMAIL",
    "PHONE",
    "REDACTED",
    "SECRET",
    "Redactor",
    "adopt_foreign_loggers",
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


# -- configuration ----------------------------------------------------------------------------------

_HANDLER_MARK = "_commerce_bridge_handler"
_HOOK_MARK = "_commerce_bridge_hook"
UNCAUGHT_LOGGER = "commerce_bridge.uncaught"

# stdlib loggers of our dependencies: drop their own handlers so records reach our root handler;
# a level here overrides the root level for that logger (None: inherit).
_ROUTED_LOGGERS: dict[str, str | None] = {
    "uvicorn": None,
    "uvicorn.error": None,
    "uvicorn.access": None,
    "dbos": None,
    "sqlalchemy": "WARNING",  # INFO would log every SQL statement (with its parameters)
    "httpx": "WARNING",  # INFO logs every request URL
    "httpcore": "WARNING",
    "stripe": "INFO",  # DEBUG logs every request and response body
    "py.warnings": None,
}
# Libraries that add a console handler of their own when their logger has none (DBOS does, in
# ``DBOS()``): a placeholder handler that writes nothing keeps them from it, so their records keep
# propagating to our root handler.
_PLACEHOLDER_LOGGERS = ("dbos",)
# Fields of stdlib records that only duplicate the message (uvicorn's coloured copy).
_DROPPED_FIELDS = ("color_message",)


class _RootHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The one handler that writes lines; a failure to format a record never prints the record."""

    def __init__(self, stream: IO[str], json: bool) -> None:
        super().__init__(stream)
        self._json = json
        setattr(self, _HANDLER_MARK, True)

    def handleError(self, record: logging.LogRecord) -> None:
        # The default prints the record's message and arguments as plain text, which is what the
        # redactor is there to prevent: write a bare line naming the failure instead.
        if not logging.raiseExceptions:
            return
        try:
            error = type(sys.exc_info()[1]).__name__
            fields = {"event": "logging.record_failed", "level": "error", "logger": record.name, "error": error,
                      "timestamp": _dt.datetime.now(_dt.UTC).isoformat().replace("+00:00", "Z")}
            line = _json.dumps(fields) if self._json else " ".join(f"{k}={v}" for k, v in fields.items())
            self.stream.write(line + "\n")
            self.flush()
        except Exception:  # nothing left to report to
            pass


class _Placeholder(logging.NullHandler):
    """Occupies a library logger's handler list so that the library does not add its own."""

    def __init__(self) -> None:
        super().__init__()
        setattr(self, _HANDLER_MARK, True)


def _ours(handler: logging.Handler) -> bool:
    return bool(getattr(handler, _HANDLER_MARK, False))


def _drop_fields(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    for key in _DROPPED_FIELDS:
        event_dict.pop(key, None)
    return event_dict


def _level_number(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.strip().upper())
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    return number


def adopt_foreign_loggers() -> list[str]:
    """Remove the handlers libraries installed on their own loggers, so that every record reaches ours.

    Every logger that exists is visited: handlers other than ours and ``logging.NullHandler`` are
    removed and closed (DBOS's console and OTLP handlers, SQLAlchemy's ``echo`` handler, a
    ``logging.basicConfig`` handler on the root...), and a logger that lost one propagates to the
    root (a logger silenced on purpose, ``propagate=False`` without handlers, stays silent). Safe
    to call any number of times; call it after code that may configure logging has run (the engine
    calls it right after constructing DBOS).

    Returns
    -------
    list[str]
        The names of the loggers that lost a handler (``"root"`` for the root logger).
    """
    adopted: list[str] = []
    root = logging.getLogger()
    for h in list(root.handlers):
        # Only the plain handlers ``basicConfig`` installs: test runners hang their own subclasses here.
        if not _ours(h) and type(h) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(h)
            h.close()
            if "root" not in adopted:
                adopted.append("root")
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):  # a PlaceHolder of the hierarchy
            continue
        removed = False
        for h in list(lg.handlers):
            if not _ours(h) and not isinstance(h, logging.NullHandler):
                lg.removeHandler(h)
                h.close()
                removed = True
        if removed:  # what it wrote now goes to the root handler (a logger silenced on purpose stays so)
            lg.propagate = True
            adopted.append(name)
    return adopted


def configure_logging(
    level: str | int = "INFO",
    json: bool = True,
    pii_keys: Iterable[str] = (),
    stream: IO[str] | None = None,
    *,
    capture_warnings: bool = True,
    capture_uncaught: bool | None = None,
    max_field_chars: int | None = 16384,
) -> Redactor:
    """Route structlog and all stdlib logging through one renderer with redaction.

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
    capture_uncaught:
        Log uncaught exceptions (``sys.excepthook``, ``threading.excepthook``,
        ``sys.unraisablehook``) under ``commerce_bridge.uncaught`` instead of printing them on
        standard error. A hook that someone else installed before (a test runner's) is still called
        after ours. ``None`` (the default): when the lines go to standard error or standard output,
        where the printed tracebacks would land between them (not when they go to a file).
    max_field_chars:
        Longest string kept per field after redaction (a serialisation error can carry a whole
        event); ``None`` for no limit.

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
    redactor = Redactor(pii_keys, max_chars=max_field_chars)

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
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder(), _drop_fields],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redactor,  # last before rendering, for both structlog and stdlib records
            renderer,
        ],
    )
    out = stream if stream is not None else sys.stderr
    handler = _RootHandler(out, json)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in list(root.handlers):
        if _ours(old):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(number)
    # For a record of a logger that neither propagates nor has a handler: instead of a plain-text
    # line on stderr, the same line as any other (at WARNING and above, as logging's own).
    last_resort = _RootHandler(handler.stream, json)
    last_resort.setFormatter(formatter)
    last_resort.setLevel(logging.WARNING)
    logging.lastResort = last_resort

    for name, forced in _ROUTED_LOGGERS.items():
        lg = logging.getLogger(name)
        for old in list(lg.handlers):
            lg.removeHandler(old)
        lg.propagate = True
        lg.setLevel(_level_number(forced) if forced else logging.NOTSET)
    for name in _PLACEHOLDER_LOGGERS:
        logging.getLogger(name).addHandler(_Placeholder())
    adopt_foreign_loggers()
    logging.captureWarnings(capture_warnings)
    if capture_uncaught is None:
        capture_uncaught = any(out is s for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__))
    if capture_uncaught:
        _install_exception_hooks()

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


# -- uncaught exceptions ----------------------------------------------------------------------------

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _previous(current: Any, default: Any) -> Any:
    """The hook to chain to: the one installed before ours, unless it is the default printer."""
    previous = getattr(current, _HOOK_MARK, current)  # ours again: chain to what ours chained to
    return None if previous is default else previous


def _install_exception_hooks() -> None:
    log = logging.getLogger(UNCAUGHT_LOGGER)

    prev_sys = _previous(sys.excepthook, sys.__excepthook__)

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        try:
            log.critical("uncaught exception", exc_info=(exc_type, exc, tb))
        finally:
            if prev_sys is not None:
                prev_sys(exc_type, exc, tb)

    prev_thread = _previous(threading.excepthook, threading.__excepthook__)

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        try:
            if args.exc_type is not SystemExit:
                thread = args.thread.name if args.thread is not None else None
                info = (args.exc_type, args.exc_value, args.exc_traceback) if args.exc_value is not None else None
                log.error("uncaught exception in thread", exc_info=info,
                          extra={"in_thread": thread, "error": args.exc_type.__name__})
        finally:
            if prev_thread is not None:
                prev_thread(args)

    prev_unraisable = _previous(sys.unraisablehook, sys.__unraisablehook__)

    def unraisablehook(u: Any) -> None:
        try:
            try:
                obj = repr(u.object) if u.object is not None else None
            except Exception:
                obj = f"<unprintable {type(u.object).__name__}>"
            info = (u.exc_type, u.exc_value, u.exc_traceback) if u.exc_value is not None else None
            log.error(u.err_msg or "Exception ignored", exc_info=info,
                      extra={"object": obj, "error": u.exc_type.__name__})
        finally:
            if prev_unraisable is not None:
                prev_unraisable(u)

    hooks: list[tuple[Callable[..., None], Any]] = [
        (excepthook, prev_sys), (thread_excepthook, prev_thread), (unraisablehook, prev_unraisable),
    ]
    for hook, prev in hooks:
        setattr(hook, _HOOK_MARK, prev)
    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook


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
