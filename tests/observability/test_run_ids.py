"""Run ids are unique across processes: the JSON logs of several workers (or of one session
continued in a second process) meet in one pipeline, where ``run-1`` of every process was
one run."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import json
from loopwright import Agent, MemoryStore, ScriptedModel
from loopwright.run_context import RunContext
from loopwright.events import Usage
agent = Agent(ScriptedModel(["ok"]), store=MemoryStore())
session = agent.new_session()
print(json.dumps([RunContext(agent, session, Usage(), "agent").id for _ in range(2)]))
"""


def test_run_ids_differ_between_processes_and_runs() -> None:
    ids = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        ids += json.loads(done.stdout)
    assert len(set(ids)) == 4, ids
    assert all(i.startswith("run-") for i in ids)
