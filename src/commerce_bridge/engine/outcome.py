"""What one attempt of one step came to: :class:`StepOutcome`, and the record DBOS keeps of it.

Rules
-----
* An attempt never raises: it ends as a ``StepOutcome``, succeeded (its output) or failed (the error's
  code, message, whether it is transient, whether it is a bug, what to do about it, and the input).
* DBOS records a checkpointed attempt's outcome as a plain dict (:meth:`StepOutcome.to_record`), with the
  keys it has always had, so runs recorded by an earlier version replay unchanged:
  :meth:`StepOutcome.from_record` reads them back. Unknown keys are ignored.
* :meth:`StepOutcome.error` rebuilds the error (its class from the code) for the retry policy, and
  :attr:`StepOutcome.failure` is what the workflow walker needs to decide on ``on_error``.
"""

from __future__ import annotations

import traceback as tb
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from commerce_bridge import errors as E
from commerce_bridge.workflows.spec import StepFailure

_ERROR_CLASSES = {cls.code: cls for cls in E.all_error_classes()}


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """The outcome of one attempt of one step."""

    ok: bool
    output: Any = None
    code: str = ""
    message: str = ""
    transient: bool = False
    bug: bool = False
    retry_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    upstream_request_id: str | None = None
    suggested_fix: str | None = None
    input: Any = None
    traceback: str | None = None

    @classmethod
    def succeeded(cls, output: Any) -> StepOutcome:
        return cls(ok=True, output=output)

    @classmethod
    def of_error(cls, exc: E.BridgeError, step_input: Any) -> StepOutcome:
        """A failure the bridge classified (its code says whether and how it is retried)."""
        return cls(ok=False, code=exc.code, message=exc.message, transient=exc.transient,
                   retry_after=getattr(exc, "retry_after", None), details=_plain(exc.details),
                   upstream_request_id=exc.upstream_request_id, suggested_fix=exc.suggested_fix,
                   input=_plain(step_input))

    @classmethod
    def of_bug(cls, exc: BaseException, step_input: Any) -> StepOutcome:
        """An exception the bridge did not expect: never retried, parked with the traceback."""
        return cls(ok=False, bug=True, code="internal_error", message=f"{type(exc).__name__}: {exc}",
                   traceback=tb.format_exc(), input=_plain(step_input))

    @classmethod
    def invalid(cls, message: str, *, suggested_fix: str | None = None, step_input: Any = None,
                code: str = "validation_error") -> StepOutcome:
        """A permanent failure found before the action ran (a `when` that cannot be evaluated, a bad wait)."""
        return cls(ok=False, code=code, message=message, suggested_fix=suggested_fix,
                   input=None if step_input is None else _plain(step_input))

    @property
    def failure(self) -> StepFailure:
        return StepFailure(code=self.code or "internal_error", message=self.message, details=self.details,
                           transient=self.transient, bug=self.bug)

    def error(self) -> BaseException:
        """The error this outcome recorded, rebuilt (so the retry policy can judge it)."""
        if self.bug:
            return RuntimeError(self.message or "bug")
        cls = _ERROR_CLASSES.get(self.code, E.BridgeError)
        kwargs: dict[str, Any] = {"details": dict(self.details)}
        if issubclass(cls, E.RateLimited):
            kwargs["retry_after"] = self.retry_after
        return cls(self.message, **kwargs)

    def fix(self) -> str:
        """The suggested fix, or the generic one of its kind."""
        if self.suggested_fix:
            return self.suggested_fix
        if self.bug:
            return "A bug in commerce-bridge: report it with the traceback; replay once fixed."
        if self.transient:
            return "The destination kept failing; check its status, then replay."
        return "Correct the data or mapping named in the error, then replay."

    def to_record(self) -> dict[str, Any]:
        """The dict DBOS records (the keys of earlier versions; empty fields left out)."""
        if self.ok:
            return {"ok": True, "output": self.output}
        record: dict[str, Any] = {"ok": False, "code": self.code, "message": self.message,
                                  "transient": self.transient}
        if self.bug:
            record["bug"] = True
        for key in ("retry_after", "upstream_request_id", "suggested_fix", "input", "traceback"):
            if (value := getattr(self, key)) is not None:
                record[key] = value
        if self.details:
            record["details"] = self.details
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> StepOutcome:
        if record.get("ok"):
            return cls(ok=True, output=record.get("output"))
        return cls(ok=False, code=str(record.get("code") or "internal_error"), message=str(record.get("message") or ""),
                   transient=bool(record.get("transient")), bug=bool(record.get("bug")),
                   retry_after=record.get("retry_after"), details=dict(record.get("details") or {}),
                   upstream_request_id=record.get("upstream_request_id"),
                   suggested_fix=record.get("suggested_fix"), input=record.get("input"),
                   traceback=record.get("traceback"))


def _plain(value: Any) -> Any:
    return orjson.loads(orjson.dumps(value, default=str))


__all__ = ["StepOutcome"]
