"""Suite files (YAML and JSONL), their errors, and each kind of check."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore, ScriptedModel
from loopwright.evals.checkers import (
    CheckContext,
    ContainsCheck,
    ExactCheck,
    FileContentsCheck,
    FileExistsCheck,
    InfraError,
    JudgeCheck,
    PythonCheck,
    RegexCheck,
    run_check,
    workspace_snapshot,
)
from loopwright.evals.suite import Suite, SuiteError, Task, load_suite, write_fixtures
from loopwright.models.base import ModelError
from loopwright.models.scripted import ScriptedTurn

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evals" / "basic.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# --- loading -----------------------------------------------------------------------------


def test_the_example_suite_loads_with_at_least_ten_scripted_tasks() -> None:
    suite = load_suite(EXAMPLE)

    assert suite.name == "basic"
    assert len(suite.tasks) >= 10
    assert all(task.script for task in suite.tasks)
    assert all(task.checks for task in suite.tasks)
    kinds = {check.type for task in suite.tasks for check in task.checks}
    assert kinds == {
        "exact",
        "contains",
        "regex",
        "file_exists",
        "file_contents",
        "python",
        "judge",
    }
    assert len(suite.sha256) == 64


def test_a_jsonl_suite_is_one_task_per_line(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {"id": "one", "prompt": "Say hi", "checks": [{"type": "regex", "pattern": "hi"}]}
        ),
        "",
        "# a comment",
        json.dumps({"id": "two", "prompt": "Say bye", "limits": {"max_turns": 2}}),
    ]
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(lines))

    suite = load_suite(path)

    assert suite.name == "small"
    assert [t.id for t in suite.tasks] == ["one", "two"]
    assert suite.limits_for(suite.tasks[1]).max_turns == 2
    assert suite.limits_for(suite.tasks[0]).max_turns == 20  # the default


def test_limits_and_tools_fall_back_from_task_to_suite_to_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path / "s.yaml",
        """
        tools: [Read]
        limits: {max_turns: 5, max_cost_usd: 0.5}
        tasks:
          - {id: a, prompt: x}
          - {id: b, prompt: y, tools: [], limits: {max_turns: 2, timeout: 9}}
        """,
    )

    suite = load_suite(path)
    a, b = suite.tasks

    assert suite.tools_for(a) == ["Read"]
    assert suite.tools_for(b) == []
    assert suite.limits_for(a).model_dump() == {
        "max_turns": 5,
        "timeout": 300.0,
        "max_cost_usd": 0.5,
        "max_tokens_budget": None,
    }
    assert suite.limits_for(b).max_turns == 2
    assert suite.limits_for(b).timeout == 9


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "tasks:\n  - {id: a, prompt: x, checks: [{type: regexp, pattern: x}]}",
            "s.yaml: task 1 (a): checks.0: unknown check type; use one of: exact, contains",
        ),
        ("tasks:\n  - {id: a}", "task 1 (a): prompt: this field is required; fix the suite file"),
        (
            "tasks:\n  - {id: a, prompt: x}\n  - {id: a, prompt: y}",
            "task id 'a' is used twice",
        ),
        ("tasks:\n  - {id: 'a b', prompt: x}", "a task id is 1-80 letters"),
        ("tasks:\n  - {id: a, prompt: x, tools: [Shell]}", "unknown tool(s) Shell"),
        ("tasks:\n  - {id: a, prompt: x, files: {../up.txt: hi}}", "must be relative and stay"),
        ("tasks:\n  - {id: a, prompt: x, promt: y}", "promt: unknown field"),
        (
            "tasks:\n  - {id: a, prompt: x, checks: [{type: regex, pattern: '(x'}]}",
            "task a: regex check: the pattern '(x' is not valid",
        ),
        (
            "tasks:\n  - {id: a, prompt: x, files: {d.csv: {source: nope.csv}}}",
            "fixture 'd.csv' comes from 'nope.csv', which does not exist",
        ),
        (
            "tasks:\n  - {id: a, prompt: x, checks: [{type: python, function: missing.py:f}]}",
            "no file 'missing.py' next to the suite",
        ),
        ("tasks: [\n", "is not valid YAML"),
        ("name: nothing", "has no tasks"),
    ],
)
def test_bad_suites_say_where_and_what_to_fix(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(body)

    with pytest.raises(SuiteError) as caught:
        load_suite(path)

    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_missing_suite_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"no suite file at .*nope\.yaml; give the path"):
        load_suite(tmp_path / "nope.yaml")


def test_selecting_unknown_tasks_lists_the_known_ones() -> None:
    suite = load_suite(EXAMPLE)

    assert [t.id for t in suite.select(["capital"]).tasks] == ["capital"]
    with pytest.raises(SuiteError, match="no task 'capitol' in suite 'basic'; its tasks are"):
        suite.select(["capitol"])


def test_fixtures_are_written_inline_or_copied(tmp_path: Path) -> None:
    (tmp_path / "fixtures" / "nested").mkdir(parents=True)
    (tmp_path / "fixtures" / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "fixtures" / "nested" / "x.txt").write_text("x")
    task = Task.model_validate(
        {
            "id": "t",
            "prompt": "p",
            "files": {
                "notes/a.md": "# A\n",
                "data.csv": {"source": "fixtures/data.csv"},
                "tree": {"source": "fixtures/nested"},
            },
        }
    )
    workspace = tmp_path / "ws"
    workspace.mkdir()

    write_fixtures(task, workspace, tmp_path)

    assert (workspace / "notes" / "a.md").read_text() == "# A\n"
    assert (workspace / "data.csv").read_text() == "a,b\n1,2\n"
    assert (workspace / "tree" / "x.txt").read_text() == "x"


async def test_a_script_plays_real_tool_calls_and_quotes_the_last_result(tmp_path: Path) -> None:
    from loopwright.tools.files import ReadTool, WriteTool

    task = Task.model_validate(
        {
            "id": "t",
            "prompt": "save and read",
            "script": [
                {
                    "text": "Saving.",
                    "call": "Write",
                    "input": {"file_path": "a.txt", "content": "42"},
                },
                {"calls": [{"name": "Read", "input": {"file_path": "a.txt"}}]},
                "The file says: {{result}}",
            ],
        }
    )
    model = task.scripted_model()
    assert model is not None
    agent = Agent(
        model, tools=[ReadTool, WriteTool], store=MemoryStore(), workspace_root=str(tmp_path)
    )

    first = await agent.collect("save and read")
    second = await agent.collect("save and read")  # the script starts over for a new prompt

    assert first.text == "The file says: 1\t42"
    assert second.text == first.text
    assert (first.session.workspace_dir / "a.txt").read_text() == "42"


async def test_a_script_that_runs_out_says_so(tmp_path: Path) -> None:
    task = Task(id="short", prompt="p", script=[{"call": "Glob", "input": {"pattern": "*"}}])
    model = task.scripted_model()
    assert model is not None
    from loopwright.tools.files import GlobTool

    agent = Agent(model, tools=[GlobTool], store=MemoryStore(), workspace_root=str(tmp_path))

    result = await agent.collect("p")

    assert result.stop_reason == "error"
    errors = [e for e in result.events if e.type == "error"]
    assert "script of task 'short' has 1 turn(s)" in errors[-1]["message"]


# --- checks ------------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path) -> CheckContext:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "out.txt").write_text("Total: 15\n")
    (workspace / "data.json").write_text('{"orders": 3, "revenue": 60.5}')
    (tmp_path / "mychecks.py").write_text(
        textwrap.dedent(
            """
            def total_is(answer, workspace, result, value):
                return (workspace / "out.txt").read_text().strip() == f"Total: {value}"

            def detail(answer, workspace, result):
                return False, "the answer is too short"

            def as_dict(answer, workspace, result):
                return {"passed": True, "detail": "fine", "score": 90}

            def asserts(answer, workspace, result):
                assert "Paris" in answer, "the answer does not name Paris"

            async def is_async(answer, workspace, result):
                return "Paris" in answer

            def wrong_type(answer, workspace, result):
                return "yes"
            """
        )
    )
    return CheckContext(
        prompt="What is the capital of France?",
        answer="  Paris  ",
        workspace=workspace,
        result=None,
        suite_dir=tmp_path,
    )


@pytest.mark.parametrize(
    ("check", "passed", "detail"),
    [
        (ExactCheck(type="exact", expected="Paris"), True, "is 'Paris'"),
        (ExactCheck(type="exact", expected="paris"), False, "expected 'paris'"),
        (ExactCheck(type="exact", expected="paris", ignore_case=True), True, ""),
        (ExactCheck(type="exact", expected="Paris", strip=False), False, ""),
        (ExactCheck(type="exact", path="out.txt", expected="Total: 15"), True, "out.txt"),
        (ExactCheck(type="exact", path="none.txt", expected="x"), False, "does not exist"),
        (ContainsCheck.model_validate({"type": "contains", "text": ["Par", "is"]}), True, ""),
        (
            ContainsCheck.model_validate({"type": "contains", "text": "Par", "not_text": "aris"}),
            False,
            "contains 'aris', which it must not",
        ),
        (RegexCheck(type="regex", pattern=r"^\s*P\w+s\s*$"), True, "matches"),
        (RegexCheck(type="regex", pattern="paris"), False, "does not match"),
        (RegexCheck(type="regex", pattern="paris", ignore_case=True), True, ""),
        (RegexCheck(type="regex", path="out.txt", pattern=r"Total: \d+"), True, ""),
        (FileExistsCheck(type="file_exists", path="out.txt"), True, "out.txt exists"),
        (FileExistsCheck(type="file_exists", path="gone.txt"), False, "does not exist"),
        (FileExistsCheck(type="file_exists", path="gone.txt", exists=False), True, "absent"),
        (FileExistsCheck(type="file_exists", path="../ws/out.txt"), True, ""),
        (FileExistsCheck(type="file_exists", path="../../etc/passwd"), False, ""),
        (FileContentsCheck(type="file_contents", path="out.txt", equals="Total: 15"), True, ""),
        (FileContentsCheck(type="file_contents", path="out.txt", equals="15"), False, "holds"),
        (FileContentsCheck(type="file_contents", path="out.txt", contains="15"), True, ""),
        (
            FileContentsCheck(type="file_contents", path="out.txt", not_contains=["15"]),
            False,
            "must not",
        ),
        (FileContentsCheck(type="file_contents", path="out.txt", regex=r"^\d\d$"), False, "match"),
        (FileContentsCheck(type="file_contents", path="out.txt", regex=r"\d\d$"), True, ""),
        (
            FileContentsCheck.model_validate(
                {
                    "type": "file_contents",
                    "path": "data.json",
                    "json": {"orders": 3, "revenue": 60.5},
                }
            ),
            True,
            "",
        ),
        (
            FileContentsCheck.model_validate(
                {"type": "file_contents", "path": "out.txt", "json": {"a": 1}}
            ),
            False,
            "not valid JSON",
        ),
        (PythonCheck(type="python", function="mychecks.py:total_is", args={"value": 15}), True, ""),
        (PythonCheck(type="python", function="mychecks:total_is", args={"value": 16}), False, ""),
        (PythonCheck(type="python", function="mychecks.py:detail"), False, "too short"),
        (PythonCheck(type="python", function="mychecks.py:as_dict"), True, "fine"),
        (PythonCheck(type="python", function="mychecks.py:asserts"), True, ""),
        (PythonCheck(type="python", function="mychecks.py:is_async"), True, ""),
        (PythonCheck(type="python", function="mychecks.py:wrong_type"), False, "return True/False"),
        (PythonCheck(type="python", function="mychecks.py:nope"), False, "has no function 'nope'"),
        (PythonCheck(type="python", function="json:dumps"), False, "raised TypeError"),
    ],
)
async def test_checks(ctx: CheckContext, check: object, passed: bool, detail: str) -> None:
    result = await run_check(check, ctx)  # type: ignore[arg-type]

    assert result.passed is passed, result.detail
    assert detail in result.detail


async def test_a_python_check_failing_an_assertion_reports_its_message(ctx: CheckContext) -> None:
    ctx.answer = "London"

    result = await run_check(PythonCheck(type="python", function="mychecks.py:asserts"), ctx)

    assert not result.passed
    assert result.detail == "the answer does not name Paris"


async def test_a_judge_check_grades_against_its_rubric(ctx: CheckContext) -> None:
    judge = ScriptedModel(['{"score": 81, "passed": true, "issues": [], "reasoning": "Right."}'])
    ctx.judge = judge
    check = JudgeCheck(type="judge", rubric="Names the capital of France.", threshold=80)

    result = await run_check(check, ctx)

    assert result.passed
    assert result.score == 81
    assert result.tokens > 0
    prompt = judge.requests[0].messages[0].text
    assert "Names the capital of France." in prompt
    assert "--- out.txt\nTotal: 15" in prompt  # the judge sees the workspace


async def test_a_judge_check_below_its_threshold_fails(ctx: CheckContext) -> None:
    ctx.judge = ScriptedModel(['{"score": 75, "passed": true, "reasoning": "Almost."}'])

    result = await run_check(JudgeCheck(type="judge", rubric="r", threshold=80), ctx)

    assert not result.passed
    assert result.detail.startswith("score 75")


async def test_a_judge_check_uses_its_script_when_the_model_is_scripted(ctx: CheckContext) -> None:
    ctx.scripted = True
    scripted = JudgeCheck(
        type="judge", rubric="r", script='```json\n{"score": 95, "passed": true}\n```'
    )

    assert (await run_check(scripted, ctx)).passed
    unscripted = await run_check(JudgeCheck(type="judge", rubric="r"), ctx)
    assert not unscripted.passed
    assert "no 'script' reply" in unscripted.detail


async def test_a_judge_outage_is_an_infrastructure_error(ctx: CheckContext) -> None:
    ctx.judge = ScriptedModel([ScriptedTurn(error=ModelError("overloaded", retryable=True))])

    with pytest.raises(InfraError, match="overloaded"):
        await run_check(JudgeCheck(type="judge", rubric="r"), ctx)


def test_the_workspace_snapshot_shows_text_files_and_skips_hidden_and_binary(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / ".evals").mkdir()
    (tmp_path / ".evals" / "x.json").write_text("{}")
    (tmp_path / "img.bin").write_bytes(b"\x00\x01\x02")
    (tmp_path / "big.txt").write_text("b" * 500)

    snapshot = workspace_snapshot(tmp_path, limit=100)

    assert "--- a.txt\nalpha" in snapshot
    assert ".evals" not in snapshot
    assert "img.bin (binary, 3 bytes)" in snapshot
    assert "[... cut]" in snapshot


def test_suite_model_is_usable_in_code() -> None:
    suite = Suite(tasks=[Task(id="x", prompt="y")])

    assert suite.directory == Path.cwd()
    assert suite.tools_for(suite.tasks[0])[0] == "Read"
