"""Run the real CLI with the built-in demo model slowed down, so a test can interrupt it.

Used as a script: ``python slow_cli.py <delay-seconds> <loopwright args...>``. Only the demo
model's streaming delay changes; everything else is the installed command.
"""

from __future__ import annotations

import sys

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

if __name__ == "__main__":
    main()
