"""``loopwright config``: the settings table with the values in effect."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from loopwright.settings import SECRET_VARIABLES, config_path, effective


def show_settings(console: Console) -> int:
    path = config_path()
    console.print(f"config file: {path if path is not None else '(none)'}")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("setting", "variable", "value", "from"):
        table.add_column(column, overflow="fold")
    for setting, value, source in effective():
        shown = "***" if setting.env in SECRET_VARIABLES and value else value
        table.add_row(setting.key, setting.env, shown or "", source)
    console.print(table)
    console.print("Precedence: flags, then environment variables, then loopwright.toml.")
    return 0
