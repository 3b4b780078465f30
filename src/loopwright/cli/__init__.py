"""The ``loopwright`` command line: run a task, chat, manage saved sessions.

The entry point is :func:`loopwright.cli.app.main`. This package imports nothing heavy at
import time, so ``loopwright --help`` starts fast; commands load the agent on use.
"""
