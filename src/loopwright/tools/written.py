"""What a tool's run wrote in the workspace: the files new or changed (by a listing taken
before and after), and the images among them that will not open (empty, or cut short by a
crash). ``Python`` names every file written; ``Bash`` names the images (a chart drawn by a
script it ran)."""

from __future__ import annotations

import os

#: Entries looked at when listing what a run wrote; past this, nothing is listed.
MAX_SCANNED = 5_000
#: Files named in the note; the rest are counted.
MAX_LISTED = 20
#: Directories never listed: loopwright's own (the code file, the sandbox's HOME) and
#: Python's bytecode caches.
_SKIPPED_DIRS = frozenset({".loopwright", "__pycache__"})

#: A workspace file's identity and content stamp: (inode, size, mtime in ns).
Stamp = tuple[int, int, int]


def workspace_files(workspace: str) -> dict[str, Stamp] | None:
    """The workspace's files (relative path → stamp), for telling what a run wrote;
    ``None`` for a workspace too big to scan cheaply (or unreadable)."""
    files: dict[str, Stamp] = {}
    pending, scanned = [""], 0
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(os.path.join(workspace, relative)) as entries:
                for entry in entries:
                    scanned += 1
                    if scanned > MAX_SCANNED:
                        return None
                    name = os.path.join(relative, entry.name)
                    if entry.is_dir(follow_symlinks=False):
                        if entry.name not in _SKIPPED_DIRS:
                            pending.append(name)
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        files[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            if not relative:
                return None
    return files


def files_written(
    before: dict[str, Stamp] | None, after: dict[str, Stamp] | None
) -> list[tuple[str, int]]:
    """The files new or changed between two listings, with their sizes, in name order; a
    name's characters that are not printable are escaped (a newline as ``\\n``, a byte that
    is not UTF-8, decoded as a lone surrogate, as ``\\udcff``): such a name could not be saved
    with the session, or would break the note's line."""
    if before is None or after is None:
        return []
    changed = sorted((name, stamp[1]) for name, stamp in after.items() if before.get(name) != stamp)
    return [(_printable(name), size) for name, size in changed]


def _printable(name: str) -> str:
    if name.isprintable():
        return name
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def written_note(written: list[tuple[str, int]], what: str = "Files") -> str:
    """``[Files written in the workspace: chart.png (21.3 KiB), ...]`` (``what``: the kind
    of file listed)."""
    from loopwright.sandbox.limits import format_size

    shown = ", ".join(f"{name} ({format_size(size)})" for name, size in written[:MAX_LISTED])
    more = len(written) - MAX_LISTED
    if more > 0:
        shown += f" and {more:,} more"
    return f"[{what} written in the workspace: {shown}]"


#: Image files a chart is saved as, by name ending, and the bytes a whole one starts with.
IMAGE_SIGNATURES = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".webp": (b"RIFF",),
    ".svg": (b"",),
    ".pdf": (b"%PDF-",),
}
#: Bytes read from the end of an image to find its end marker.
_TAIL_BYTES = 1024


def is_image(name: str) -> bool:
    """Whether ``name`` is an image file (a chart), by its ending."""
    return name.lower().endswith(tuple(IMAGE_SIGNATURES))


def image_problem(path: str) -> str | None:
    """Why the image file at ``path`` (a chart, by its name: ``.png``, ``.jpg``, ``.svg``...)
    will not open, or ``None`` when it looks whole: empty, or cut short (its end marker
    missing: PNG's ``IEND``, JPEG's ``FFD9``, SVG's ``</svg>``, PDF's ``%%EOF``...), as
    a script that crashed or was killed while saving it leaves it."""
    ending = "." + path.rsplit(".", 1)[-1].lower()
    starts = IMAGE_SIGNATURES.get(ending)
    if starts is None:
        return None
    kind = ending[1:].upper().replace("JPG", "JPEG")
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            if not head:
                return "empty"
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - _TAIL_BYTES))
            tail = handle.read()
    except OSError:
        return None  # removed or unreadable meanwhile: not ours to judge
    if not head.startswith(starts):
        return f"not a {kind} image"
    end = tail.rstrip(b" \t\r\n\x00")
    whole = {
        ".png": end.endswith(b"IEND\xaeB`\x82"),
        ".jpg": end.endswith(b"\xff\xd9"),
        ".jpeg": end.endswith(b"\xff\xd9"),
        ".gif": end.endswith(b";"),
        ".webp": int.from_bytes(head[4:8], "little") + 8 == size,
        ".svg": end.endswith(b"</svg>") or end.endswith(b"</svg:svg>"),
        ".pdf": b"%%EOF" in end,
    }[ending]
    return None if whole else f"cut short: not a whole {kind} image"


def broken_images(workspace: str, names: list[str]) -> list[tuple[str, str]]:
    """The images among the files ``names`` (relative to ``workspace``) that will not open,
    with why (:func:`image_problem`)."""
    broken = []
    for name in names[:MAX_LISTED]:
        if is_image(name):
            problem = image_problem(os.path.join(workspace, name))
            if problem is not None:
                broken.append((name, problem))
    return broken


def broken_note(broken: list[tuple[str, str]]) -> str:
    """``[Images that will not open: chart.png (empty). ...]``."""
    shown = ", ".join(f"{name} ({problem})" for name, problem in broken)
    return (
        f"[Images that will not open: {shown}. Save them again, whole and in the format "
        "their names say, before naming them in the answer.]"
    )
