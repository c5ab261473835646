"""The workflow registry: built-in workflow files, user overrides, every loaded version kept for pinned runs.

Sources, in load order: workflows defined in code (``origin="code"``), the files shipped in
``commerce_bridge/workflows/builtin_files/`` (``"builtin"``), then ``*.yaml``/``*.yml`` files in a
configured folder (``"user"``).

* **Active version.** For each name, new runs use the highest version (versions compare as numbers,
  ``2`` > ``1.5``); on a tie a user file beats a built-in, which beats code. So a user file with the
  same name and a higher or equal version overrides the built-in; a lower one is loaded but inactive.
* **Pinning.** Every loaded version stays addressable by ``(name, version)`` through :meth:`get`,
  also after :meth:`reload` picks up a newer file, so a run started on version 1 finishes on 1.
  When two different texts claim the same ``(name, version)`` (a user file equal to the built-in, or
  a file edited in place), the later one is registered as ``"<version>+<first 8 hex of its sha256>"``
  so both stay addressable. Across restarts only files present on disk exist: keep an old file until
  the runs pinned to it have finished (``workflows list`` shows every version).
* **Exact text.** A run is pinned to the sha256 of the text it started on too (:meth:`digest`; None
  for a workflow defined in code). ``get(name, version, digest)`` answers only that exact text, under
  whatever version label it is registered now, so a file edited in place without a new ``version``
  (or a release that changed a built-in file) is never walked by a run planned on the old text: the
  engine parks such a run (``validation_error``, "changed since this run started"). Put the old file
  back and replay, or replay ``--from-start`` to run it again on the current text.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import structlog

from commerce_bridge.errors import ConfigurationError, ValidationError
from commerce_bridge.workflows.catalogue import Catalogue
from commerce_bridge.workflows.loader import Problem, WorkflowFileError, load_file, load_text
from commerce_bridge.workflows.spec import WorkflowSpec

__all__ = ["BUILTIN_DIR", "RegisteredWorkflow", "WorkflowRegistry", "version_key"]

log = structlog.get_logger("commerce_bridge.workflows")

BUILTIN_DIR = Path(str(resources.files("commerce_bridge.workflows") / "builtin_files"))
_ORIGIN_RANK = {"code": 0, "builtin": 1, "user": 2}


def version_key(version: str) -> tuple[int, ...]:
    """``"1.10+ab12cd34"`` -> ``(1, 10)``: the numeric part, for ordering."""
    numeric = version.split("+", 1)[0]
    try:
        return tuple(int(p) for p in numeric.split("."))
    except ValueError:
        return (0,)


@dataclass(frozen=True, slots=True)
class RegisteredWorkflow:
    """One loaded version of a workflow and where it came from."""

    spec: WorkflowSpec
    origin: str  # "code" | "builtin" | "user"
    file: str | None
    digest: str | None
    text: str | None
    seq: int

    @property
    def rank(self) -> tuple[tuple[int, ...], int, int]:
        return (version_key(self.spec.version), _ORIGIN_RANK[self.origin], self.seq)


class WorkflowRegistry:
    """Every loaded version of every workflow: which is active (new runs), and any by name and version
    (pinned runs). Routing deliveries to them is :class:`~commerce_bridge.workflows.router.Router`'s."""

    def __init__(self, *, user_dir: str | Path | None = None, builtin_dir: str | Path | None = BUILTIN_DIR,
                 code: Iterable[WorkflowSpec] = (), catalogue: Catalogue | None = None) -> None:
        self.user_dir = Path(user_dir) if user_dir else None
        self.builtin_dir = Path(builtin_dir) if builtin_dir else None
        self._catalogue = catalogue
        self._entries: dict[tuple[str, str], RegisteredWorkflow] = {}
        self._seq = itertools.count()
        self.problems: list[Problem] = []
        self._active: dict[str, RegisteredWorkflow] | None = None  # cache, reset by _add
        for spec in code:
            self._add(spec, "code", None, None, None)

    @classmethod
    def load(cls, *, user_dir: str | Path | None = None, builtin_dir: str | Path | None = BUILTIN_DIR,
             code: Iterable[WorkflowSpec] = (), catalogue: Catalogue | None = None) -> WorkflowRegistry:
        """Build and load a registry; any invalid file stops start-up.

        Raises
        ------
        ConfigurationError
            Listing every problem (file:line:column, message, fix) of every invalid file.
        """
        reg = cls(user_dir=user_dir, builtin_dir=builtin_dir, code=code, catalogue=catalogue)
        problems = reg.reload()
        if problems:
            raise ConfigurationError(f"{len(problems)} problem(s) in workflow files",
                                     errors=[str(p) for p in problems])
        return reg

    # ---- loading --------------------------------------------------------------------------------
    def reload(self) -> list[Problem]:
        """(Re)scan the built-in and user folders, adding versions not seen yet; keeps every old one.

        Returns the problems of invalid files (those files are skipped).
        """
        problems: list[Problem] = []
        for origin, folder in (("builtin", self.builtin_dir), ("user", self.user_dir)):
            if folder is None:
                continue
            if not folder.is_dir():
                problems.append(Problem(str(folder), 1, 1, "the workflow folder does not exist",
                                        "create it or correct the configured path"))
                continue
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
                try:
                    loaded = load_file(path, self._catalogue)
                except WorkflowFileError as exc:
                    problems += exc.problems
                    continue
                self._add(loaded.spec, origin, loaded.file, loaded.digest, loaded.text)
        self.problems = problems
        return problems

    def add_text(self, text: str, file: str, origin: str = "user") -> RegisteredWorkflow:
        """Register a workflow from YAML text (for tests and the admin API).

        Raises
        ------
        WorkflowFileError
            When the text is not a valid workflow.
        """
        loaded = load_text(text, file, self._catalogue)
        return self._add(loaded.spec, origin, file, loaded.digest, text)

    def _add(self, spec: WorkflowSpec, origin: str, file: str | None, digest: str | None,
             text: str | None) -> RegisteredWorkflow:
        existing = self._entries.get(spec.key)
        if existing is not None:
            if digest is not None and existing.digest == digest:
                return existing
            if digest is None:
                raise ValidationError(f"workflow {spec.name} version {spec.version} is defined twice in code")
            spec = dataclasses.replace(spec, version=f"{spec.version}+{digest[:8]}")
            again = self._entries.get(spec.key)
            if again is not None:
                return again
        entry = RegisteredWorkflow(spec, origin, file, digest, text, next(self._seq))
        self._entries[spec.key] = entry
        self._active = None
        return entry

    def text_clashes(self) -> list[tuple[RegisteredWorkflow, RegisteredWorkflow]]:
        """User files whose ``(name, version)`` was loaded first with another text: ``(file's entry, first)``.

        Loading keeps both addressable (the later as ``<version>+<sha256 prefix>``, so runs pinned to
        either finish), but a new text under an old version is a mistake ``workflows validate`` refuses:
        its runs could not be told apart from the other text's by version.
        """
        out = []
        for e in self.entries():
            if e.origin != "user" or "+" not in e.spec.version:
                continue
            first = self._entries.get((e.spec.name, e.spec.version.split("+", 1)[0]))
            if first is not None and first.digest != e.digest:
                out.append((e, first))
        return out

    def clash_with(self, name: str, version: str, digest: str) -> RegisteredWorkflow | None:
        """The loaded ``(name, version)`` if its text is not the one with ``digest`` (None: no such clash)."""
        first = self._entries.get((name, version))
        return first if first is not None and first.digest != digest else None

    # ---- queries ---------------------------------------------------------
    def entries(self) -> list[RegisteredWorkflow]:
        """Every loaded version, by name then version."""
        return sorted(self._entries.values(), key=lambda e: (e.spec.name, e.rank))

    def active(self, name: str) -> RegisteredWorkflow | None:
        """The version new runs of ``name`` use."""
        return self._active_table().get(name)

    def _active_table(self) -> dict[str, RegisteredWorkflow]:
        if self._active is None:
            table: dict[str, RegisteredWorkflow] = {}
            for e in sorted(self._entries.values(), key=lambda e: e.seq):  # dict order = first load order
                best = table.get(e.spec.name)
                if best is None or e.rank > best.rank:
                    table[e.spec.name] = e
            self._active = table
        return self._active

    def is_active(self, entry: RegisteredWorkflow) -> bool:
        return self.active(entry.spec.name) is entry

    def all(self) -> list[WorkflowSpec]:
        """The active version of every workflow, in the order names were first loaded."""
        return [e.spec for e in self._active_table().values()]

    def missing_actions(self, step_types: Iterable[str]) -> dict[str, list[str]]:
        """Active workflows that use step types not in ``step_types`` (no action bound): name -> types.

        Runs of such a workflow would park at the first unbound step; bootstrap can warn or refuse.
        """
        bound = set(step_types)
        out: dict[str, list[str]] = {}
        for spec in self.all():
            missing = sorted({s.uses for s in spec.all_steps()} - bound)
            if missing:
                out[spec.name] = missing
        return out

    def get(self, name: str, version: str, digest: str | None = None) -> WorkflowSpec | None:
        """Any loaded version (active or not): what a pinned run asks for.

        With ``digest`` (the sha256 of the text the run was planned with) only that exact text is
        answered: ``(name, version)`` when its text has that digest, else the loaded version of
        ``name`` that has it (the old file put back next to its edited copy is registered as
        ``"<version>+<digest[:8]>"``, or the other way round); None when no loaded text has it.
        """
        entry = self._entries.get((name, version))
        if digest is None or (entry is not None and entry.digest == digest):
            return entry.spec if entry else None
        same = next((e for e in self._entries.values() if e.spec.name == name and e.digest == digest), None)
        return same.spec if same else None

    def digest(self, name: str, version: str) -> str | None:
        """The sha256 of the text ``(name, version)`` was loaded from; None if defined in code or not loaded."""
        entry = self._entries.get((name, version))
        return entry.digest if entry else None

    def entry(self, name: str, version: str | None = None) -> RegisteredWorkflow | None:
        """One loaded version, or the active one when ``version`` is None."""
        return self.active(name) if version is None else self._entries.get((name, version))

    def run_vars(self, status_vars: Mapping[str, Any],
                 overrides: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
        """The vars each workflow's runs are pinned with, over the file's own ``vars``: name -> vars.

        A workflow (any loaded version) that declares a var named in ``status_vars`` gets the status
        map's value for it; ``overrides`` (``CB_WORKFLOW_VARS``) win over both.
        """
        declared: dict[str, set[str]] = {}
        for entry in self._entries.values():
            declared.setdefault(entry.spec.name, set()).update(entry.spec.vars)
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(set(declared) | set(overrides or {})):
            pinned = {k: v for k, v in status_vars.items() if k in declared.get(name, ())}
            pinned.update((overrides or {}).get(name, {}))
            if pinned:
                out[name] = pinned
        return out

    def ignored_status_vars(self, status_vars: Mapping[str, Any],
                            run_vars: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """User files that set a status var to something other than what their runs get: file -> those vars.

        ``run_vars`` as returned by :meth:`run_vars`; the file's value is ignored (for bootstrap to warn).
        """
        out: dict[str, dict[str, Any]] = {}
        for e in self.entries():
            pinned = run_vars.get(e.spec.name, {})
            differ = {k: v for k, v in e.spec.vars.items() if k in status_vars and k in pinned and v != pinned[k]}
            if e.origin == "user" and differ:
                out[e.file or e.spec.name] = differ
        return out

    def describe(self) -> list[dict[str, Any]]:
        """Every loaded version as plain data (for ``workflows list`` and the admin API)."""
        return [{"name": e.spec.name, "version": e.spec.version, "origin": e.origin, "active": self.is_active(e),
                 "file": e.file, "digest": e.digest, "sources": list(e.spec.trigger.sources),
                 "event_types": list(e.spec.trigger.event_types), "filter": e.spec.trigger.filter,
                 "steps": len(e.spec.all_steps())} for e in self.entries()]
