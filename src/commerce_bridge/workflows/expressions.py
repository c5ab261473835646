"""The expression language of workflow files: JMESPath over the run's scope, compiled once, never ``eval``.

Where expressions appear
------------------------
* ``trigger.filter`` and a step's ``when``: a bare JMESPath expression (``${ ... }`` around it is
  accepted too). The result is tested for *JMESPath truthiness*: ``false``, ``null``, ``""``, ``[]``
  and ``{}`` are false; everything else, **including ``0``**, is true.
* A ``with`` value that is a whole string ``"${ expr }"``: replaced by the raw value of ``expr``
  (any JSON type: object, list, number, ...). There is no interpolation inside longer strings; build
  strings with ``join('', [...])``.
* A ``with`` value starting with ``$/``: a JSON Pointer (RFC 6901) into the scope, e.g.
  ``"$/event/data/ID"``. Unlike JMESPath, a pointer that does not resolve is an error.
* A ``with`` string starting with ``$$`` is a literal with one ``$`` removed (``"$${x}"`` → ``"${x}"``).

The scope
---------
``{"event": <the trigger event as received>, "trigger": {"source", "event_type", "event_id"},
"steps": {<step id>: <its output>}, "errors": {<step id>: {"code", "message", "details"}},
"vars": <the workflow's vars>}``. A step that was skipped (its ``when`` was false) or has not run is
absent from ``steps``, so ``steps.x.y`` is ``null`` (JMESPath never fails on missing fields).

Only the standard JMESPath functions exist (``length``, ``contains``, ``join``, ``to_number``, ...).

Limits
------
JMESPath can grow its data exponentially (``[@, @][]`` doubles a list; twenty of them in a pipe build a
million elements). Every evaluation therefore runs in a bounded interpreter (:class:`ExpressionLimits`):

* it may build at most :data:`MAX_EXPRESSION_VALUES` values: the elements of every list and object it
  creates, intermediate results included (values it only reads from the scope are free);
* no list, object or string it creates may be larger than :data:`MAX_EXPRESSION_BYTES` as JSON (data it
  refers to counts, and a value referred to twice counts twice), and the text it creates (``join``,
  ``to_string``) may total at most as many characters;
* it may run for :data:`MAX_EXPRESSION_SECONDS`, checked before every node of the expression is visited
  (cooperatively: nothing is killed).

Past a limit the evaluation stops with :class:`ExpressionLimitExceeded` (a ``ValidationError``): a
``when`` or a ``with`` parameter parks the run at its step, a ``trigger.filter`` counts as no match.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
import orjson
from jmespath import exceptions as jexc
from jmespath.visitor import TreeInterpreter

from commerce_bridge.errors import ValidationError

__all__ = [
    "DEFAULT_LIMITS",
    "MAX_EXPRESSION_BYTES",
    "MAX_EXPRESSION_SECONDS",
    "MAX_EXPRESSION_VALUES",
    "SCOPE_ROOTS",
    "Expression",
    "ExpressionError",
    "ExpressionLimitExceeded",
    "ExpressionLimits",
    "compile_expression",
    "is_pointer",
    "is_template",
    "pitfalls",
    "root_paths",
    "template_source",
    "truthy",
]

SCOPE_ROOTS: tuple[str, ...] = ("event", "trigger", "steps", "errors", "vars")
_TEMPLATE = re.compile(r"^\$\{(?P<expr>.*)\}$", re.DOTALL)


MAX_EXPRESSION_VALUES = 100_000
"""Values one evaluation may build: the elements of every list and object it creates, intermediates included."""
MAX_EXPRESSION_BYTES = 4_000_000
"""Largest list, object or string one evaluation may create, as JSON; also the most text it may create."""
MAX_EXPRESSION_SECONDS = 1.0
"""Time one evaluation may take (checked before each node of the expression is visited)."""
LIMITS_DOCS = "docs/reference/workflows.md#limits"


class ExpressionError(ValidationError):
    """An expression in a workflow does not compile or cannot be evaluated."""

    def within(self, where: str) -> ExpressionError:
        """The same error, its message prefixed with where the expression is (``workflow x, step y, when``).

        Raise it ``from`` this one.
        """
        return type(self)(f"{where}: {self.message}", errors=self.errors, suggested_fix=self.suggested_fix,
                          details=self.details)


class ExpressionLimitExceeded(ExpressionError):
    """An expression built too much or ran too long and was stopped."""


@dataclass(frozen=True, slots=True)
class ExpressionLimits:
    """The bounds of one evaluation (see the module docstring); ``clock`` is injectable for tests."""

    max_values: int = MAX_EXPRESSION_VALUES
    max_bytes: int = MAX_EXPRESSION_BYTES
    max_seconds: float = MAX_EXPRESSION_SECONDS
    clock: Callable[[], float] = time.monotonic


DEFAULT_LIMITS = ExpressionLimits()


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled JMESPath expression and its source text."""

    source: str
    _compiled: Any

    def evaluate(self, scope: Mapping[str, Any], limits: ExpressionLimits = DEFAULT_LIMITS) -> Any:
        """The value of the expression in ``scope``, evaluated within ``limits``.

        Raises
        ------
        ExpressionLimitExceeded
            When the evaluation builds too many values, too large a value or too much text, or runs
            too long; the message names the limit and the error suggests a fix.
        ExpressionError
            When a function gets arguments of the wrong type (e.g. ``length(`1`)``).
        """
        try:
            return _BoundedInterpreter(limits).visit(self._compiled.parsed, scope)
        except _Stop as stop:
            raise _exceeded(self.source, stop, limits) from None
        except jexc.JMESPathError as exc:
            raise ExpressionError(f"expression {self.source!r} failed: {exc}") from exc

    def test(self, scope: Mapping[str, Any], limits: ExpressionLimits = DEFAULT_LIMITS) -> bool:
        """Evaluate and apply JMESPath truthiness (``0`` is true; ``null``, ``""``, ``[]``, ``{}`` are false)."""
        return truthy(self.evaluate(scope, limits))

    def pitfalls(self) -> list[str]:
        """Constructs that parse but almost certainly do not mean what they say (see :func:`pitfalls`)."""
        return pitfalls(self._compiled.parsed)

    def root_paths(self) -> list[tuple[str, ...]]:
        """The chains of field names the expression reads from the top of the scope."""
        return root_paths(self._compiled.parsed)


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """Compile a JMESPath expression (``${ ... }`` around it is stripped).

    Raises
    ------
    ExpressionError
        When the text is not valid JMESPath; the message carries the parser's explanation.
    """
    text = template_source(source) if is_template(source) else source
    text = text.strip()
    if not text:
        raise ExpressionError("empty expression")
    try:
        return Expression(text, jmespath.compile(text))
    except jexc.JMESPathError as exc:
        raise ExpressionError(f"expression {text!r} does not compile: {_one_line(exc)}") from exc


# ---- the bounded interpreter -----------------------------------------------------------------------
class _Stop(Exception):  # internal signal, turned into ExpressionLimitExceeded by evaluate()
    def __init__(self, limit: str, what: str) -> None:
        super().__init__(what)
        self.limit = limit
        self.what = what


# node types whose result (when not null) is a list or object created by the visit
_BUILDS = frozenset({"multi_select_list", "multi_select_dict", "projection", "filter_projection",
                     "value_projection", "flatten", "slice"})
_SCALAR_SIZE = 8  # numbers, true, false, null: an estimate of their JSON length is enough


class _BoundedInterpreter(TreeInterpreter):  # type: ignore[misc]  # jmespath has no type hints
    """JMESPath's tree interpreter with a clock check at every node and a count of what it creates.

    ``_sizes`` maps ``id()`` of every list and object measured during this evaluation to (the value,
    its estimated JSON length); it holds the value so that its id cannot be reused while evaluating.
    """

    def __init__(self, limits: ExpressionLimits) -> None:
        super().__init__()
        self._limits = limits
        self._clock = limits.clock
        self._deadline = limits.clock() + limits.max_seconds
        self._built = 0
        self._text = 0
        self._sizes: dict[int, tuple[Any, int]] = {}

    def visit(self, node: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        if self._clock() > self._deadline:
            raise _Stop("MAX_EXPRESSION_SECONDS", f"it ran longer than {self._limits.max_seconds:g} s")
        kind = node["type"]
        method = self._method_cache.get(kind)
        if method is None:
            method = self._method_cache[kind] = getattr(self, "visit_" + kind, self.default_visit)
        result = method(node, *args, **kwargs)
        if kind in _BUILDS and result is not None:
            self._count(result)
        return result

    def visit_function_expression(self, node: Mapping[str, Any], value: Any) -> Any:
        args = [self.visit(child, value) for child in node["children"]]
        result = self._functions.call_function(node["value"], args)
        if isinstance(result, str | list | dict) and not _taken_from(result, args):
            self._count(result)
        return result

    def _count(self, value: Any) -> None:
        """Charge a value this evaluation created and check it against the limits."""
        if isinstance(value, str):
            self._text += len(value)
            if self._text > self._limits.max_bytes:
                raise _Stop("MAX_EXPRESSION_BYTES",
                            f"it created more than {self._limits.max_bytes} characters of text")
            return
        if not isinstance(value, list | dict):
            return
        self._built += len(value) + 1
        if self._built > self._limits.max_values:
            raise _Stop("MAX_EXPRESSION_VALUES", f"it built more than {self._limits.max_values} values")
        self._size(value)

    def _size(self, value: list[Any] | dict[str, Any]) -> int:
        """Estimated JSON length of a list or object this evaluation created; at most ``max_bytes``.

        The lists and objects inside it were measured when they were created (the interpreter builds
        inside out), or are data read from the scope, measured here once per evaluation; a part that
        occurs several times counts at each place, as it would in the JSON.
        """
        total = 2 + len(value)
        if isinstance(value, dict):
            total += sum(len(str(k)) + 3 for k in value)
        for item in value.values() if isinstance(value, dict) else value:
            if isinstance(item, str):
                total += len(item) + 2
            elif isinstance(item, list | dict):
                known = self._sizes.get(id(item))
                total += known[1] if known is not None else self._read_size(item)
            else:
                total += _SCALAR_SIZE
        if total > self._limits.max_bytes:
            raise _Stop("MAX_EXPRESSION_BYTES", f"it built a value larger than {self._limits.max_bytes} bytes as JSON")
        self._sizes[id(value)] = (value, total)
        return total

    def _read_size(self, value: list[Any] | dict[str, Any]) -> int:
        """The JSON length of data read from the scope (or a literal), once per evaluation."""
        try:
            size = len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
        except (orjson.JSONEncodeError, TypeError):  # deeper than orjson goes: count values instead
            size, stack = 0, [value]
            while stack:
                cur = stack.pop()
                size += 1
                if isinstance(cur, list | dict):
                    stack.extend(cur.values() if isinstance(cur, dict) else cur)
                    if size > self._limits.max_bytes:
                        break
        self._sizes[id(value)] = (value, size)
        return size


def _taken_from(result: Any, args: list[Any]) -> bool:
    """Whether a function returned one of its arguments or an element of one (nothing new was created)."""
    for arg in args:
        if result is arg:
            return True
        if isinstance(arg, list) and any(result is item for item in arg):
            return True
        if isinstance(arg, dict) and any(result is item for item in arg.values()):
            return True
    return False


def _exceeded(source: str, stop: _Stop, limits: ExpressionLimits) -> ExpressionLimitExceeded:
    shown = source if len(source) <= 80 else source[:77] + "..."
    if stop.limit == "MAX_EXPRESSION_SECONDS":
        fix = ("make the expression do less work: filter before projecting, avoid filters and functions "
               "inside projections over long lists, or move the work into a step")
    else:
        fix = ("the expression grows its data (nested projections, [@, @], merge or to_array of itself, "
               "join of itself): select only the fields the step needs and filter before projecting")
    return ExpressionLimitExceeded(
        f"expression {shown!r} was stopped: {stop.what} ({stop.limit})",
        suggested_fix=f"{fix}; the limits are described in {LIMITS_DOCS}",
        details={"limit": stop.limit, "max_values": limits.max_values, "max_bytes": limits.max_bytes,
                 "max_seconds": limits.max_seconds},
    )


def is_template(value: object) -> bool:
    """Whether ``value`` is a whole-string ``${ expr }``."""
    return isinstance(value, str) and _TEMPLATE.match(value) is not None


def template_source(value: str) -> str:
    """The expression inside ``${ ... }``."""
    m = _TEMPLATE.match(value)
    if m is None:
        raise ExpressionError(f"{value!r} is not a ${{ ... }} expression")
    return m.group("expr").strip()


def is_pointer(value: object) -> bool:
    """Whether ``value`` is a ``$/json/pointer`` reference."""
    return isinstance(value, str) and value.startswith("$/")


def truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, empty string/list/object are false; numbers (even 0) are true."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict | tuple) and len(value) == 0)


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def pitfalls(node: Mapping[str, Any]) -> list[str]:
    """Readable warnings for JMESPath traps in a parsed tree.

    ``!a.b`` parses as ``(!a).b`` (``!`` binds tighter than ``.``), which is always null.
    """
    found: list[str] = []
    stack = [node]
    while stack:
        cur = stack.pop()
        children = cur.get("children", [])
        if (cur.get("type") in ("subexpression", "index_expression", "projection") and children
                and children[0].get("type") == "not_expression"):
            found.append("'!' binds tighter than '.': '!a.b' means '(!a).b', which is always null; "
                         "write '!(a.b)'")
        stack.extend(c for c in children if isinstance(c, Mapping))
    return found


_ALL_CHILDREN_AT_ROOT = {
    "comparator", "and_expression", "or_expression", "not_expression", "function_expression",
    "multi_select_list", "multi_select_dict", "key_val_pair",
}
_FIRST_CHILD_AT_ROOT = {"index_expression", "projection", "filter_projection", "value_projection", "flatten",
                        "pipe"}


def root_paths(node: Mapping[str, Any]) -> list[tuple[str, ...]]:
    """Chains of field names read from the scope's top level in a parsed JMESPath tree.

    ``steps.pay.status == 'ok' && event.id`` gives ``[("steps", "pay", "status"), ("event", "id")]``.
    Fields inside projections, filters and the right side of pipes are relative to elements and are
    not reported.
    """
    found: list[tuple[str, ...]] = []
    _walk(node, found)
    return found


def _walk(node: Mapping[str, Any], found: list[tuple[str, ...]]) -> None:
    kind = node.get("type")
    children = node.get("children", [])
    if kind == "field":
        found.append((node["value"],))
    elif kind == "subexpression":
        chain: list[str] = []
        for child in children:
            if child.get("type") == "field":
                chain.append(child["value"])
                continue
            if child.get("type") == "index_expression" and child["children"][0].get("type") == "field":
                chain.append(child["children"][0]["value"])
            elif not chain:
                _walk(child, found)
            break
        if chain:
            found.append(tuple(chain))
    elif kind in _FIRST_CHILD_AT_ROOT and children:
        _walk(children[0], found)
    elif kind in _ALL_CHILDREN_AT_ROOT:
        for child in children:
            _walk(child, found)
