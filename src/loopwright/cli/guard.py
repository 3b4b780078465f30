"""Running a command's body: a user error (``CliError``) becomes one line on stderr.

Only typer is imported here (``CliError`` when a body fails), so ``loopwright --help`` stays
fast.
"""

from __future__ import annotations

from collections.abc import Callable

import typer


def guarded(action: Callable[[], int]) -> int:
    """Run a command body and return its exit status; a ``CliError`` is printed as
    ``error: ...`` in red on stderr and its exit status returned."""
    from loopwright.cli.runtime import CliError

    try:
        return action()
    except CliError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        return exc.exit_code
