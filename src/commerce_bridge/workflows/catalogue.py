"""The step catalogue: step types declared in code, the workflow JSON Schema and the reference page built from them.

Each step type (``system.resource.verb``) is a :class:`StepType`: summary, description, typed
parameters, output, an example output (the placeholder the dry run uses), idempotency, the errors it
raises and worked examples. Each module of ``commerce_bridge.workflows.steps`` declares its step types
next to their actions, and ``steps.step_catalogue()`` collects them; this module holds the machinery
only: :class:`Catalogue`, :func:`workflow_schema` and :func:`catalogue_markdown`, each given the
catalogue it describes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "EXPRESSION_PATTERN",
    "PARAM_TYPES",
    "Catalogue",
    "Param",
    "StepType",
    "catalogue_markdown",
    "workflow_schema",
]

PARAM_TYPES = ("string", "integer", "number", "boolean", "object", "array", "money")
EXPRESSION_PATTERN = r"^(\$\{[\s\S]*\}|\$/[\s\S]*)$"
STEP_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
NAME_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$"
STEP_TYPE_PATTERN = r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$"
MARKDOWN_BANNER = (
    "<!-- THIS FILE IS GENERATED from the step declarations in "
    "src/commerce_bridge/workflows/steps/*.py (STEP_TYPES) by "
    "commerce_bridge.workflows.catalogue.catalogue_markdown(). Do not edit it by hand. -->"
)


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a step type (a key of the step's ``with``).

    ``type`` is one of :data:`PARAM_TYPES`; ``money`` is ``{"minor": int, "currency": "USD"}``.
    ``choices`` restricts a string to a closed set.
    """

    name: str
    type: str
    description: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(f"param {self.name}: unknown type {self.type!r}")

    def json_schema(self) -> dict[str, Any]:
        """The schema of a literal value, or an expression that yields one at run time."""
        literal: dict[str, Any] = {"$ref": "#/$defs/money"} if self.type == "money" else {"type": self.type}
        if self.choices:
            literal["enum"] = list(self.choices)
        doc: dict[str, Any] = {"description": self.description,
                               "anyOf": [literal, {"$ref": "#/$defs/expression"}]}
        if self.default is not None:
            doc["default"] = self.default
        return doc


@dataclass(frozen=True, slots=True)
class StepType:
    """The declaration of one step type: the single source for validation, dry runs and docs."""

    type: str
    summary: str
    description: str
    params: tuple[Param, ...]
    output: str
    example_output: Any
    idempotency: str
    errors: tuple[tuple[str, str], ...]  # (error class name from commerce_bridge.errors, when)
    examples: tuple[Mapping[str, Any], ...]
    writes: bool = True  # False for pure reads (the dry run labels the call "read")
    inline: bool = False
    """Pure and local (no side effect, no remote call): the engine runs it without a checkpoint and
    computes it again on replay, which costs less than recording it."""
    also_needs: tuple[str, ...] = ()
    """Systems besides its destination whose connector it uses (the refund steps re-read each Refund
    from Stripe): it is bound only when all of them are configured."""
    needs_setting: str | None = None
    """A setting (``Settings`` field) that must be set for the step to be bound, besides its connectors (e.g.
    ``clarity_inventory_section``): without it the workflows using the step are off, as for a connector."""
    replay_safe: bool = False
    """Its side effect is idempotent by a key taken from its input (find, else create, under a key
    lock), and nothing reads its output but later steps of the same run: the engine runs it without a
    checkpoint, and a replay runs it again, which finds what the first run made (the same document,
    at the cost of the lookup). Only for steps whose second execution cannot act differently from the
    first (a status write can: a person may have changed the status in between)."""

    @property
    def checkpointed(self) -> bool:
        """Whether each attempt is recorded by the engine (a DBOS step)."""
        return not (self.inline or self.replay_safe)

    @property
    def destination(self) -> str:
        """The system called: the first segment of the type (``stripe``, ``clarity``, ``core``...)."""
        return self.type.split(".", 1)[0]

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def with_schema(self) -> dict[str, Any]:
        """JSON Schema of this type's ``with`` block."""
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {p.name: p.json_schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
        }


@dataclass
class Catalogue:
    """The registry of step types, by name."""

    _types: dict[str, StepType] = field(default_factory=dict)
    shapes: str = ""  # Markdown describing shapes shared by several step types

    @classmethod
    def of(cls, types: Iterable[StepType], shapes: str = "") -> Catalogue:
        cat = cls(shapes=shapes)
        for t in types:
            cat.register(t)
        return cat

    def register(self, step_type: StepType) -> None:
        if step_type.type in self._types:
            raise ValueError(f"step type {step_type.type} is declared twice")
        self._types[step_type.type] = step_type

    def get(self, name: str) -> StepType | None:
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[StepType]:
        return [self._types[n] for n in self.names()]




# ---- JSON Schema ----------------------------------------------------------------------------------
def workflow_schema(catalogue: Catalogue) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow file, generated from the catalogue."""
    cat = catalogue
    per_type = []
    for t in cat.all():
        then: dict[str, Any] = {"properties": {"with": t.with_schema()}}
        if any(p.required for p in t.params):
            then["required"] = ["with"]
        per_type.append({"if": {"properties": {"uses": {"const": t.type}}, "required": ["uses"]}, "then": then})
    retry = {
        "type": "object", "additionalProperties": False,
        "description": "Overrides of the step type's retry policy (transient errors only).",
        "properties": {
            "max_attempts": {"type": "integer", "minimum": 1, "description": "Attempts including the first."},
            "base_delay_s": {"type": "number", "minimum": 0, "description": "Backoff ceiling of the first retry."},
            "max_delay_s": {"type": "number", "minimum": 0, "description": "Cap on the backoff ceiling."},
        },
    }
    expression_text = {"type": "string", "minLength": 1,
                       "description": "A JMESPath expression (see docs/reference/workflows.md)."}
    branch_when = {**expression_text, "description": "Only failures for which this is true take the branch."}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:commerce-bridge:workflow",
        "title": "commerce-bridge workflow",
        "description": "A workflow file: a trigger and the steps a run executes. Generated from the step catalogue.",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "version", "trigger", "steps"],
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN,
                     "description": "Dotted lower-case name, e.g. clarity.order_to_cash."},
            "version": {"anyOf": [{"type": "integer", "minimum": 1},
                                  {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)*$"}],
                        "description": "A positive integer or dotted numbers; compared numerically."},
            "description": {"type": "string"},
            "vars": {"type": "object", "description": "Constants, readable as vars.<name> in expressions."},
            "trigger": {
                "type": "object", "additionalProperties": False, "required": ["event_types"],
                "properties": {
                    "sources": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1},
                                "default": ["*"]},
                    "event_types": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                    "filter": {**expression_text,
                               "description": "Runs start only for events for which this is true."},
                },
            },
            "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
        },
        "$defs": {
            "expression": {"type": "string", "pattern": EXPRESSION_PATTERN,
                           "description": "\"${ jmespath }\" or \"$/json/pointer\", resolved when the step runs."},
            "money": {"type": "object", "additionalProperties": False, "required": ["minor", "currency"],
                      "properties": {"minor": {"anyOf": [{"type": "integer"}, {"$ref": "#/$defs/expression"}]},
                                     "currency": {"anyOf": [{"type": "string", "pattern": "^[A-Z]{3}$"},
                                                            {"$ref": "#/$defs/expression"}]}}},
            "retry": retry,
            "step_params": {"allOf": per_type},
            "step": _step_schema(cat, branch=False),
            "branch_step": _step_schema(cat, branch=True),
            "on_error": {
                "description": "What a permanent failure of the step does instead of parking the run: a list "
                               "of steps, or an object with exactly one of steps, goto, continue (and an "
                               "optional when).",
                "type": ["array", "object"],
                "if": {"type": "array"},
                "then": {"minItems": 1, "items": {"$ref": "#/$defs/branch_step"}},
                "else": {
                    "additionalProperties": False,
                    "properties": {
                        "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/branch_step"}},
                        "goto": {"type": "string", "pattern": STEP_ID_PATTERN},
                        "continue": {"const": True},
                        "when": branch_when,
                    },
                    "oneOf": [{"required": ["steps"]}, {"required": ["goto"]}, {"required": ["continue"]}],
                },
            },
        },
    }


def _step_schema(cat: Catalogue, *, branch: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "id": {"type": "string", "pattern": STEP_ID_PATTERN,
               "description": "Unique in the workflow; snake_case (it is used in expressions: steps.<id>)."},
        "uses": {"type": "string", "enum": cat.names(), "description": "The step type (see the catalogue)."},
        "with": {"type": "object", "description": "Parameters of the step type."},
        "when": {"type": "string", "minLength": 1, "description": "Run the step only if this is true."},
        "retry": {"$ref": "#/$defs/retry"},
        "description": {"type": "string"},
    }
    if not branch:
        props["on_error"] = {"$ref": "#/$defs/on_error"}
    return {"type": "object", "additionalProperties": False, "required": ["id", "uses"], "properties": props,
            "allOf": [{"$ref": "#/$defs/step_params"}]}


# ---- reference page -----------------------------------------------------------------------------
def catalogue_markdown(catalogue: Catalogue) -> str:
    """``docs/reference/steps.md``: every step type, generated from its declaration."""
    cat = catalogue
    out = [MARKDOWN_BANNER, "", "# Step catalogue", "",
           "Every step type a workflow file may `use`, generated from the declarations in code. The format "
           "of workflow files is in [workflows.md](workflows.md). Parameters accept a literal value or an "
           "expression (`\"${ jmespath }\"` or `\"$/json/pointer\"`) resolved when the step runs. Every step "
           "gets the idempotency key `run_id:step_id`.", "",
           "| step type | destination | summary |", "|---|---|---|"]
    for t in cat.all():
        out.append(f"| [`{t.type}`](#{_anchor(t.type)}) | {t.destination} | {t.summary} |")
    if cat.shapes:
        out += ["", "## Shared shapes", "", cat.shapes.strip()]
    for t in cat.all():
        out += ["", f"## {t.type}", "", f"{t.summary}", "", t.description.strip(), "",
                f"Destination: `{t.destination}` ({'writes' if t.writes else 'reads only'})"
                + "".join(f"; also uses `{n}` (bound only when it is configured)" for n in t.also_needs) + ".", "",
                "### Parameters", ""]
        if t.params:
            out += ["| name | type | required | default | description |", "|---|---|---|---|---|"]
            for p in t.params:
                kind = p.type + (f" (one of {', '.join(f'`{c}`' for c in p.choices)})" if p.choices else "")
                default = "" if p.default is None else f"`{json.dumps(p.default)}`"
                out.append(f"| `{p.name}` | {kind} | {'yes' if p.required else 'no'} | {default} | {p.description} |")
        else:
            out.append("None.")
        out += ["", "### Output", "", t.output, "", "Example (the dry run uses it as the placeholder output):",
                "", "```json", json.dumps(t.example_output, sort_keys=True), "```", "",
                "### Idempotency", "", t.idempotency, "", _recording(t), "", "### Errors", ""]
        out += [f"- `{name}`: {when}" for name, when in t.errors]
        out += ["", "### Examples", ""]
        for ex in t.examples:
            out += ["```yaml", yaml.safe_dump([dict(ex)], sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def _recording(t: StepType) -> str:
    """How the engine records the step (the reference page's line under Idempotency)."""
    if t.inline:
        return "Not checkpointed: pure and local, computed again on replay."
    if t.replay_safe:
        return ("Not checkpointed: idempotent by its key, run again on replay (which finds what the first "
                "run made).")
    return "Checkpointed: each attempt's result is recorded; a replay returns it without calling again."


def _anchor(title: str) -> str:
    return title.lower().replace(".", "")
