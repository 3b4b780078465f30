"""The plain-text tables the benchmark scripts print: columns padded, a rule under the header.

Imported by the scripts next to it (``python benchmarks/x.py`` puts this directory first on
``sys.path``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, left: Collection[int]
) -> str:
    """``header`` and ``rows`` as aligned columns: those in ``left`` flush left, the others
    (figures) flush right; two spaces between columns."""
    table = [header, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    out = []
    for index, line in enumerate(table):
        cells = [
            line[i].ljust(widths[i]) if i in left else line[i].rjust(widths[i])
            for i in range(len(header))
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
