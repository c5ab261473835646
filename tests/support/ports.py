"""A structural check that an object implements a port (a ``typing.Protocol``) the way callers call it.

mypy checks the connectors against the ports where ``bootstrap`` wires them; this check runs in the
tests: ``isinstance`` against the ``@runtime_checkable`` protocol (every member is there), then every
method's parameters (names, kinds, which are optional), so a renamed keyword or a new required
parameter fails here too. Annotations are left to mypy.
"""

from __future__ import annotations

import inspect
from typing import Any

_VAR = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def protocol_methods(protocol: type) -> dict[str, Any]:
    """The methods a protocol declares (its own and inherited ones, not ``Protocol``'s or ``object``'s)."""
    out: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object,) or klass.__module__ == "typing":
            continue
        for name, value in vars(klass).items():
            if inspect.isfunction(value) and not name.startswith("_"):
                out[name] = value
    return out


def signature_mismatches(wanted: inspect.Signature, got: inspect.Signature) -> list[str]:
    """Why a method with signature ``got`` cannot be called as ``wanted`` declares (both without ``self``)."""
    problems: list[str] = []
    gparams = list(got.parameters.values())
    has_var = {kind: any(p.kind is kind for p in gparams) for kind in _VAR}
    positional = [p for p in gparams if p.kind in _POSITIONAL]
    by_name = {p.name: p for p in gparams if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    matched: set[str] = set()
    for i, want in enumerate(p for p in wanted.parameters.values() if p.kind in _POSITIONAL):
        if i < len(positional):
            have = positional[i]
            if want.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and (
                    have.name != want.name or have.kind is inspect.Parameter.POSITIONAL_ONLY):
                problems.append(f"parameter {i + 1} is {have.name!r}, callers may pass {want.name!r} by name")
            if want.default is not inspect.Parameter.empty and have.default is inspect.Parameter.empty:
                problems.append(f"{have.name!r} must be optional")
            matched.add(have.name)
        elif not has_var[inspect.Parameter.VAR_POSITIONAL]:
            problems.append(f"no parameter {i + 1} ({want.name!r})")
    for want in (p for p in wanted.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY):
        have_kw = by_name.get(want.name)
        if have_kw is None:
            if not has_var[inspect.Parameter.VAR_KEYWORD]:
                problems.append(f"no keyword {want.name!r}")
            continue
        if want.default is not inspect.Parameter.empty and have_kw.default is inspect.Parameter.empty:
            problems.append(f"keyword {want.name!r} must be optional")
        matched.add(have_kw.name)
    for kind in _VAR:
        if any(p.kind is kind for p in wanted.parameters.values()) and not has_var[kind]:
            problems.append(f"no {'*args' if kind is inspect.Parameter.VAR_POSITIONAL else '**kwargs'}")
    for extra in gparams:
        if extra.name not in matched and extra.kind not in _VAR and extra.default is inspect.Parameter.empty:
            problems.append(f"{extra.name!r} is required but callers of the port do not pass it")
    return problems


def assert_implements(obj: object, protocol: type) -> None:
    """Fail unless ``obj`` has every method of ``protocol``, each callable as the protocol declares it."""
    assert isinstance(obj, protocol), f"{type(obj).__name__} lacks members of {protocol.__name__}"
    methods = protocol_methods(protocol)
    assert methods, f"{protocol.__name__} declares no methods"
    problems = []
    for name, declared in methods.items():
        wanted = inspect.signature(declared)
        wanted = wanted.replace(parameters=list(wanted.parameters.values())[1:])  # without self
        got = inspect.signature(getattr(obj, name))  # bound: without self
        problems += [f"{type(obj).__name__}.{name}: {p}" for p in signature_mismatches(wanted, got)]
    assert not problems, f"{type(obj).__name__} does not implement {protocol.__name__}:\n  " + "\n  ".join(problems)
