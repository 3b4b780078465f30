"""That the charts an answer names are there: a Stop hook of the healthcare agent.

A model that meant to draw a chart, or drew it under another name, or whose script crashed
while saving it, still writes "see the chart top10.png" in its answer. The analyst finds no
such file (the web UI shows "[no image at ...]"). :class:`ChartCheck` reads the answer as the
run is about to end: each image it names (a Markdown image or link, or a file name ending in
``.png``, ``.jpg``, ``.svg``...) must be a whole image file in the workspace. If one is not,
the run goes on with a note saying which, and which charts the workspace does hold, so the
model draws it, names the right file, or answers without it. At most :data:`MAX_NUDGES`
notes in a row per session: a model that cannot fix it still gets to answer.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from urllib.parse import unquote

from loopwright.policy.hooks import Stop
from loopwright.tools.written import image_problem, is_image, workspace_files

#: Notes in a row a session gets before its answer is let through as it is.
MAX_NUDGES = 2
#: Sessions whose notes are counted (the oldest forgotten past this).
MAX_SESSIONS = 1_000
#: Charts of the workspace named in a note, newest first.
MAX_LISTED = 10

_MARKDOWN_TARGET = re.compile(r"\]\(\s*<?([^)<>\s]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_IMAGE_ENDINGS = r"png|jpe?g|gif|webp|svg"
_BARE_NAME = re.compile(
    rf"(?<![\w/.:%-])((?:/|\./)?(?:[\w.-]+/)*[\w-][\w.-]*\.(?:{_IMAGE_ENDINGS}))(?![\w/-])",
    re.IGNORECASE,
)


def named_images(text: str) -> list[str]:
    """The image files ``text`` names, in order, each once: Markdown targets
    (``![Top 10](charts/top10.png)``, ``[chart](top10.png)``) and file names (``top10.png``,
    in backticks or not). Web addresses are not files of the workspace and are left out."""
    found: list[str] = []
    for match in _MARKDOWN_TARGET.finditer(text):
        target = unquote(match.group(1))
        if is_image(target) and "://" not in target and not target.startswith("data:"):
            found.append(target)
    for match in _BARE_NAME.finditer(_MARKDOWN_TARGET.sub("]()", text)):
        found.append(match.group(1))
    named: list[str] = []
    for name in found:
        name = name[2:] if name.startswith("./") else name
        if name not in named:
            named.append(name)
    return named


def image_problems(text: str, workspace: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(name, what is wrong)`` for each image ``text`` names that is not a whole image
    file in ``workspace``: not there, outside the workspace, or broken (empty, cut short)."""
    root = os.path.realpath(workspace)
    problems: list[tuple[str, str]] = []
    for name in named_images(text):
        path = os.path.realpath(os.path.join(root, name))
        if path != root and not path.startswith(root + os.sep):
            problems.append((name, "outside the workspace"))
        elif not os.path.isfile(path):
            problems.append((name, "no such file"))
        elif (problem := image_problem(path)) is not None:
            problems.append((name, problem))
    return problems


def saved_images(workspace: str | os.PathLike[str]) -> list[str]:
    """The image files in ``workspace`` (relative paths), newest first, at most
    :data:`MAX_LISTED`."""
    files = workspace_files(os.fspath(workspace)) or {}
    images = [(stamp[2], name) for name, stamp in files.items() if is_image(name)]
    return [name for _, name in sorted(images, reverse=True)[:MAX_LISTED]]


def problems_note(problems: list[tuple[str, str]], saved: list[str]) -> str:
    """The note that keeps the run going: what is wrong with the charts named, and which
    charts the workspace holds."""
    wrong = "; ".join(f"{name} ({problem})" for name, problem in problems)
    there = (
        f"Charts in the workspace: {', '.join(saved)}."
        if saved
        else "There is no chart in the workspace."
    )
    return (
        f"[Check of your answer] It names charts that are not whole image files in the "
        f"workspace: {wrong}. {there} Draw and save a chart before naming it "
        "(plt.savefig('name.png') in Python), name it by its path in the workspace, or answer "
        "without it. Then give your whole answer again."
    )


class ChartCheck:
    """The Stop hook: a note for an answer naming charts that are not there (see the
    module's docstring); ``None`` (the run ends) otherwise."""

    def __init__(self, max_nudges: int = MAX_NUDGES) -> None:
        self.max_nudges = max_nudges
        self._nudged: OrderedDict[str, int] = OrderedDict()

    def __call__(self, event: Stop) -> str | None:
        if not event.workspace_dir or not event.final_text:
            return None
        problems = image_problems(event.final_text, event.workspace_dir)
        session = event.session_id
        if not problems:
            self._nudged.pop(session, None)
            return None
        count = self._nudged.pop(session, 0)
        if count >= self.max_nudges:
            return None  # it could not fix it: the answer goes out as it is
        self._nudged[session] = count + 1
        while len(self._nudged) > MAX_SESSIONS:
            self._nudged.popitem(last=False)
        return problems_note(problems, saved_images(event.workspace_dir))


__all__ = [
    "MAX_NUDGES",
    "ChartCheck",
    "image_problems",
    "named_images",
    "problems_note",
    "saved_images",
]
