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

The :class:`~commerce_bridge.redaction.Redactor` runs last before rendering, on every line from either
source, including the formatted traceback (``exception``).
"""

from __future__ import annotations

import datetime as _dt
import json as _json
import logging
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import IO, Any

import structlog
from structlog.contextvars import bind_contextvars, bound_contextvars, reset_contextvars
from structlog.types import EventDict, Processor, WrappedLogger

from commerce_bridge.redaction import CARD, DEEP, EMAIL, PHONE, REDACTED, SECRET, Redactor, luhn_valid

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
    # DEBUG logs every request and response body; INFO a line per request (its URL: a search can hold an
    # e-mail), kept for CB_LOG_LEVEL=DEBUG only (see _DEBUG_ONLY_INFO)
    "stripe": "WARNING",
    "py.warnings": None,
}
# Loggers whose INFO lines (one per HTTP request) are written only when the root level is DEBUG.
_DEBUG_ONLY_INFO = ("stripe",)
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
        if name in _DEBUG_ONLY_INFO and number <= logging.DEBUG:
            forced = "INFO"
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
