"""Run the real CLI with the built-in demo model slowed down, so a test can interrupt it.

Used as a script: ``python slow_cli.py <delay-seconds> <loopwright args...>``. Only the demo
model's streaming delay changes (and, with ``SLOW_CLI_FILES_DELAY`` set, the chat's
``/files`` waits that many seconds); everything else is the installed command.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import loopwright.models.demo as demo
from loopwright.cli.app import main
from loopwright.models.scripted import ScriptedModel

_original = demo.demo_model
_delay = float(sys.argv.pop(1))


def _slow_demo_model() -> ScriptedModel:
    model = _original()
    model.delay = _delay
    return model


demo.demo_model = _slow_demo_model

if float(os.environ.get("SLOW_CLI_FILES_DELAY", "0")) > 0:
    # /files of a workspace too big to list at once: it says it started, then takes its time
    from loopwright.cli.chat import ChatState

    _files = ChatState._files

    def _slow_files(self: ChatState, console: Any, argument: str) -> None:
        print("(listing the files)", flush=True)
        time.sleep(float(os.environ["SLOW_CLI_FILES_DELAY"]))
        _files(self, console, argument)

    ChatState._files = _slow_files  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
