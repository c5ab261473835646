"""Workflow files are read only from inside the workflows folder, and problems never quote more than an excerpt."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commerce_bridge.entrypoints.cli_workflows import workflows_app
from commerce_bridge.workflows.loader import WorkflowFileError, load_file
from commerce_bridge.workflows.registry import BUILTIN_DIR, WorkflowRegistry

MARKER = "MARKER-7f3a9c"
runner = CliRunner()
VALID = (BUILTIN_DIR / "stripe.payment_succeeded.yaml").read_text()


def a_secret_file(where: Path, text: str | None = None) -> Path:
    """A file outside the workflows folder, like /etc/passwd: lines without spaces after colons."""
    where.mkdir(parents=True, exist_ok=True)
    f = where / "passwd"
    f.write_text(text if text is not None else f"root:x:0:0:root:/root:/bin/bash\n{MARKER}:x:1:1::/:/bin/sh\n")
    return f


def test_validate_refuses_a_link_out_of_the_folder_and_never_prints_its_content(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    secret = a_secret_file(tmp_path / "etc")
    folder.mkdir()
    (folder / "evil.yaml").symlink_to(secret)
    result = runner.invoke(workflows_app, ["validate", "--dir", str(folder)])
    assert result.exit_code == 1
    assert MARKER not in result.output and "root:x" not in result.output
    assert f"{folder / 'evil.yaml'}:1:1: refused: a link that leads outside the workflows folder" in result.output
    assert "1 problem(s) found" in result.output


def test_a_link_to_a_valid_workflow_outside_is_not_loaded_listed_or_shown(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    outside = tmp_path / "elsewhere" / "paid.yaml"
    outside.parent.mkdir()
    outside.write_text(VALID.replace("version: 3", "version: 19").replace("description:", f"description: {MARKER}"))
    (folder / "paid.yaml").symlink_to(outside)
    listed = runner.invoke(workflows_app, ["list", "--dir", str(folder), "--no-config"])
    shown = runner.invoke(workflows_app, ["show", "stripe.payment_succeeded", "--dir", str(folder), "--no-config"])
    validated = runner.invoke(workflows_app, ["validate", str(folder / "paid.yaml")])  # named explicitly, too
    for result in (listed, shown, validated):
        assert MARKER not in result.output
    assert " 19 " not in listed.output and "version 3 (builtin, active)" in shown.output
    assert validated.exit_code == 1 and "refused" in validated.output


def test_the_registry_reports_the_refused_file_and_loads_the_others(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "evil.yml").symlink_to(a_secret_file(tmp_path / "etc"))
    (folder / "ok.yaml").write_text(VALID.replace("version: 1", "version: 2"))
    reg = WorkflowRegistry(user_dir=folder)
    problems = reg.reload()
    assert [(p.file, p.message.split(":")[0]) for p in problems] == [(str(folder / "evil.yml"), "refused")]
    assert MARKER not in str(problems)
    assert reg.active("stripe.payment_succeeded").spec.version == "3"  # type: ignore[union-attr]


def test_a_path_through_dotdot_out_of_the_given_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "workflows"
    folder.mkdir()
    a_secret_file(tmp_path)
    with pytest.raises(WorkflowFileError) as info:
        load_file(folder / ".." / "passwd", folder=folder)
    assert "refused: a path that leads outside the workflows folder" in info.value.message
    assert MARKER not in info.value.message


def test_links_that_stay_inside_the_folder_and_a_linked_folder_are_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "versions").mkdir(parents=True)
    (real / "versions" / "paid-2.yaml").write_text(VALID.replace("version: 1", "version: 2"))
    (real / "paid.yaml").symlink_to(real / "versions" / "paid-2.yaml")
    (tmp_path / "linked").symlink_to(real, target_is_directory=True)
    assert load_file(real / "paid.yaml").spec.version == "3"
    assert load_file(tmp_path / "linked" / "paid.yaml").spec.version == "3"
    result = runner.invoke(workflows_app, ["validate", "--dir", str(tmp_path / "linked")])
    assert result.exit_code == 0, result.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_in_the_folder_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(WorkflowFileError, match="refused: not a regular file"):
        load_file(tmp_path / "pipe.yaml")


def test_a_schema_problem_quotes_at_most_the_start_of_the_offending_value(tmp_path: Path) -> None:
    f = tmp_path / "long.yaml"  # a file of one long folded string: jsonschema would quote all of it
    f.write_text("first:line:of:a:file:that:is:not:yaml:at:all:but:parses:as:one:long:string\n"
                 f"second:line:{MARKER}\n")
    result = runner.invoke(workflows_app, ["validate", str(f)])
    assert result.exit_code == 1
    assert MARKER not in result.output
    assert "workflow: 'first:line:of:a:file:that:is:not:yaml:at:all:but:parses:... is not of type 'object'" \
        in result.output


def test_a_yaml_syntax_error_gives_the_reason_and_position_not_the_lines_around_it(tmp_path: Path) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text(f"name: t\nnote: {MARKER}\nsteps: [a, b\nversion: 1\n")
    result = runner.invoke(workflows_app, ["validate", str(f)])
    assert result.exit_code == 1
    assert MARKER not in result.output
    assert f"{f}:4:8: not valid YAML: expected ',' or ']', but got ':'" in result.output


def test_a_file_that_is_not_utf8_is_named_without_quoting_its_bytes(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(WorkflowFileError, match=r"cannot read the file: not UTF-8 text \(byte 9\)"):
        load_file(f)
