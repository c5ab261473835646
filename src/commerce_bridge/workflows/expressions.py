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
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jexc

from commerce_bridge.errors import ValidationError

__all__ = [
    "SCOPE_ROOTS",
    "Expression",
    "ExpressionError",
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


class ExpressionError(ValidationError):
    """An expression in a workflow does not compile or cannot be evaluated."""


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled JMESPath expression and its source text."""

    source: str
    _compiled: Any

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """The value of the expression in ``scope``.

        Raises
        ------
        ExpressionError
            When a function gets arguments of the wrong type (e.g. ``length(`1`)``).
        """
        try:
            return self._compiled.search(scope)
        except jexc.JMESPathError as exc:
            raise ExpressionError(f"expression {self.source!r} failed: {exc}") from exc

    def test(self, scope: Mapping[str, Any]) -> bool:
        """Evaluate and apply JMESPath truthiness (``0`` is true; ``null``, ``""``, ``[]``, ``{}`` are false)."""
        return truthy(self.evaluate(scope))

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
