"""A small Dockerfile reader for the deployment tests: stages, instructions, build arguments.

Docker has no Python parser in this environment, and the tests need structure (which stage,
which instruction, what a RUN's commands are), not string matching on the file's layout.
It follows the Dockerfile reference for what the tests use: comments, line continuations,
``ARG`` defaults (global and per stage), ``ENV``, exec and shell forms.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_SUBSTITUTION = re.compile(r"\$\([^()]*\)")


@dataclass
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The arguments as a list (JSON exec form, or shell words)."""
        text = self.args.strip()
        if text.startswith("["):
            value = json.loads(text)
            assert isinstance(value, list)
            return [str(v) for v in value]
        return shlex.split(text)


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]

    def expand(self, text: str) -> str:
        """``$VAR``/``${VAR}`` replaced by the stage's ARG defaults and ENV values."""
        return _VAR.sub(lambda m: self.variables.get(m.group(1) or m.group(2), m.group(0)), text)

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                values[key] = value
        return values

    def commands(self) -> list[list[str]]:
        """Every shell command of the stage's RUN instructions (see :meth:`commands_of`)."""
        return [command for run in self.all("RUN") for command in self.commands_of(run)]

    def commands_of(self, run: Instruction) -> list[list[str]]:
        """The shell commands of one RUN, as words, in order, with variables expanded and
        ``$(...)`` substitutions (optional parts) and ``if`` tests left out."""
        commands: list[list[str]] = []
        text = _SUBSTITUTION.sub("", self.expand(run.args))
        for part in re.split(r"&&|;|\bthen\b|\bfi\b", text):
            words = shlex.split(part)
            if words and words[0] not in ("if", "["):
                commands.append(words)
        return commands


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def logical_lines(text: str) -> list[str]:
    """Instructions one per line: continuations joined, comments and blank lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def _arg(args: str) -> tuple[str, str]:
    name, _, default = args.partition("=")
    return name.strip(), default.strip().strip('"')


def parse(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = args.split()
            base = _VAR.sub(lambda m: global_args.get(m.group(1) or m.group(2), ""), words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
            continue
        if not stages:
            assert keyword == "ARG", f"only ARG may come before the first FROM, not {keyword}"
            key, value = _arg(args)
            global_args[key] = value
            continue
        stage = stages[-1]
        stage.instructions.append(Instruction(keyword, args))
        if keyword == "ARG":
            key, value = _arg(args)
            stage.variables[key] = value or global_args.get(key, "")
        elif keyword == "ENV":
            stage.variables.update(stage.env())
    return Dockerfile(global_args, stages)
