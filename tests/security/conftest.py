"""The escape battery's tally: every attempt is recorded, and the total is printed at the
end of the run ("escape battery: N attempts, 0 escapes")."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

_TALLY = pytest.StashKey["Tally"]()


@dataclass
class Tally:
    """Attempts made against the sandbox and which of them got out."""

    attempts: list[tuple[str, bool]] = field(default_factory=list)

    def record(self, name: str, escaped: bool) -> None:
        self.attempts.append((name, escaped))

    @property
    def escapes(self) -> list[str]:
        return [name for name, escaped in self.attempts if escaped]


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Tally:
    """The run's tally (one for the whole session)."""
    stash = request.config.stash
    if _TALLY not in stash:
        stash[_TALLY] = Tally()
    return stash[_TALLY]


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    tally = config.stash.get(_TALLY, None)
    if tally is None or not tally.attempts:
        return
    escapes = tally.escapes
    terminalreporter.write_sep("=", "escape battery")
    terminalreporter.write_line(
        f"escape battery: {len(tally.attempts)} attempts, {len(escapes)} escapes"
        + (f" ({', '.join(escapes)})" if escapes else "")
    )
