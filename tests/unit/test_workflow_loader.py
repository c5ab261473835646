"""Workflow files: every built-in loads; each kind of mistake is reported with its file, line and a fix."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from commerce_bridge.workflows.loader import Problem, WorkflowFileError, check_text, load_file, load_text
from commerce_bridge.workflows.registry import BUILTIN_DIR
from commerce_bridge.workflows.spec import OnErrorAction

BUILTIN_FILES = sorted(BUILTIN_DIR.glob("*.yaml"))

HEAD = """\
name: test.flow
version: 1
trigger:
  sources: [stripe]
  event_types: [payment_intent.succeeded]
steps:
"""


def problems(steps_yaml: str, head: str = HEAD) -> list[Problem]:
    return check_text(head + textwrap.dedent(steps_yaml), "flow.yaml")


def only(steps_yaml: str, head: str = HEAD) -> Problem:
    found = problems(steps_yaml, head)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def test_builtin_files_exist() -> None:
    assert {p.name for p in BUILTIN_FILES} >= {"clarity.order_to_cash.yaml", "stripe.payment_succeeded.yaml",
                                              "clarity.order_voided.yaml", "clarity.order_shipped.yaml"}


@pytest.mark.parametrize("path", BUILTIN_FILES, ids=[p.stem for p in BUILTIN_FILES])
def test_every_builtin_file_validates_and_loads(path: Path) -> None:
    loaded = load_file(path)
    assert loaded.spec.name == path.stem and loaded.spec.description
    assert len(loaded.digest) == 64


def test_valid_file_builds_the_spec_with_when_retry_and_on_error() -> None:
    loaded = load_text(HEAD + textwrap.dedent("""\
      - id: pay
        uses: stripe.payment_intent.retrieve
        with: {payment_intent_id: "${ event.data.object.id }"}
        retry: {max_attempts: 3, base_delay_s: 0.5}
        on_error:
          when: errors.pay.code == 'not_found'
          steps:
            - id: note
              uses: core.audit.record
      - id: next
        uses: stripe.refund.create
        when: steps.pay.status == 'succeeded'
        with: {payment_intent_id: $/steps/pay/id}
        on_error: {goto: last}
      - id: last
        uses: core.audit.record
        on_error: {continue: true}
    """))
    pay, nxt, last = loaded.spec.steps
    assert dict(pay.retry) == {"max_attempts": 3, "base_delay_s": 0.5}
    assert pay.on_error is not None and pay.on_error.action is OnErrorAction.STEPS
    assert pay.on_error.when == "errors.pay.code == 'not_found'" and pay.on_error.steps[0].id == "note"
    assert nxt.when == "steps.pay.status == 'succeeded'" and nxt.with_ == {"payment_intent_id": "$/steps/pay/id"}
    assert nxt.on_error is not None and (nxt.on_error.action, nxt.on_error.goto) == (OnErrorAction.GOTO, "last")
    assert last.on_error is not None and last.on_error.action is OnErrorAction.CONTINUE
    assert loaded.spec.version == "1" and loaded.spec.trigger.sources == ("stripe",)


def test_unknown_step_type_is_reported_with_a_suggestion() -> None:
    p = only("""\
      - id: pay
        uses: stripe.payment_intent.creat
    """)
    assert (p.file, p.line) == ("flow.yaml", 8)
    assert "unknown step type" in p.message and "stripe.payment_intent.create" in p.fix


def test_duplicate_step_ids_are_reported_on_the_second_one() -> None:
    p = only("""\
      - id: a
        uses: core.audit.record
      - id: a
        uses: core.audit.record
    """)
    assert p.line == 9 and "used twice (first on line 7)" in p.message


def test_reference_to_a_later_step_is_reported() -> None:
    p = only("""\
      - id: a
        uses: core.audit.record
        when: steps.b.recorded
      - id: b
        uses: core.audit.record
    """)
    assert p.line == 9 and "not available here" in p.message


def test_reference_to_an_unknown_step_suggests_the_closest_id() -> None:
    p = only("""\
      - id: payment
        uses: stripe.payment_intent.retrieve
        with: {payment_intent_id: x}
      - id: b
        uses: stripe.refund.create
        with:
          payment_intent_id: ${ steps.paymnet.id }
    """)
    assert p.line == 13 and "no step has that id" in p.message and "payment" in p.fix


def test_pointer_to_a_later_step_is_reported() -> None:
    p = only("""\
      - id: b
        uses: stripe.refund.create
        with: {payment_intent_id: $/steps/c/id}
      - id: c
        uses: core.audit.record
    """)
    assert "steps.c" in p.message and p.line == 9


def test_expression_that_does_not_compile_is_reported_at_its_line() -> None:
    p = only("""\
      - id: a
        uses: core.audit.record
        when: "steps.x ==="
    """)
    assert p.line == 9 and "does not compile" in p.message


def test_bare_null_and_negated_paths_are_reported() -> None:
    found = problems("""\
      - id: a
        uses: core.audit.record
        when: event.x != null
      - id: b
        uses: core.audit.record
        when: "!event.x.y"
    """)
    assert [p.line for p in found] == [9, 12]
    assert "backticks" in found[0].fix and "parentheses" in found[1].fix


def test_undefined_vars_and_unknown_roots_are_reported() -> None:
    found = problems("""\
      - id: a
        uses: core.audit.record
        when: vars.nope || evnt.id
    """)
    assert len(found) == 2 and {"vars.nope" in p.message or "'evnt'" in p.message for p in found} == {True}


def test_trigger_filter_may_not_read_step_outputs() -> None:
    head = HEAD.replace("steps:\n", "  filter: steps.a.x\nsteps:\n")
    p = only("""\
      - id: a
        uses: core.audit.record
    """, head)
    assert p.line == 6 and "'steps'" in p.message


def test_missing_and_unknown_parameters_are_reported() -> None:
    found = problems("""\
      - id: hold
        uses: clarity.order.set_status
        with:
          order_id: "1"
          colour: red
    """)
    assert len(found) == 2
    by_line = {p.line: p for p in found}
    assert "status_key" in by_line[9].message
    assert "colour" in by_line[11].message and "status_key" in by_line[11].fix


def test_wrong_literal_type_is_reported() -> None:
    p = only("""\
      - id: wait
        uses: core.wait.until
        with: {delay_s: soon}
    """)
    assert p.line == 9 and "expression" in p.fix


def test_goto_must_jump_forward_to_an_existing_step() -> None:
    found = problems("""\
      - id: a
        uses: core.audit.record
      - id: b
        uses: core.audit.record
        on_error: {goto: a}
      - id: c
        uses: core.audit.record
        on_error: {goto: zz}
    """)
    assert [("backwards" in p.message, "no top-level step" in p.message) for p in found] == [(True, False),
                                                                                            (False, True)]


def test_branch_steps_cannot_nest_on_error_and_see_the_error() -> None:
    p = only("""\
      - id: a
        uses: core.audit.record
        on_error:
          - id: b
            uses: core.audit.record
            on_error: {continue: true}
    """)
    assert "on_error" in p.message
    assert problems("""\
      - id: a
        uses: core.audit.record
        on_error:
          - id: b
            uses: notify.email.send
            with: {to: x@example.com, template: operator_alert, data: {code: "${ errors.a.code }"}}
    """) == []


def test_branch_steps_cannot_be_read_after_the_branch() -> None:
    p = only("""\
      - id: a
        uses: core.audit.record
        on_error:
          - id: b
            uses: core.audit.record
      - id: c
        uses: core.audit.record
        when: steps.b
    """)
    assert "not available here" in p.message


def test_yaml_syntax_error_and_duplicate_keys_have_lines() -> None:
    syntax = check_text("name: x\nsteps: [\n", "bad.yaml")
    assert len(syntax) == 1 and syntax[0].message.startswith("not valid YAML")
    dup = check_text(HEAD.replace("version: 1\n", "version: 1\nversion: 2\n") + "  - {id: a, uses: core.audit.record}\n",
                     "dup.yaml")
    assert [(p.line, "appears twice" in p.message) for p in dup] == [(3, True)]


def test_empty_file_and_unknown_top_level_key_are_reported() -> None:
    assert "empty" in check_text("", "e.yaml")[0].message
    p = check_text(HEAD.replace("version: 1\n", "version: 1\nowner: me\n") + "  - {id: a, uses: core.audit.record}\n",
                   "k.yaml")
    assert [(x.line, "owner" in x.message) for x in p] == [(3, True)]


def test_load_raises_with_every_problem_in_the_message() -> None:
    with pytest.raises(WorkflowFileError) as info:
        load_text(HEAD + "  - {id: A, uses: nope.nope.nope}\n", "x.yaml")
    assert len(info.value.problems) == 2
    assert "x.yaml:7:" in info.value.message and info.value.code == "validation_error"
