"""What the CLI writes: data on stdout (Rich for people, JSON with ``--json``), notes
and errors on stderr, so ``--json`` output is never mixed with anything else.
"""

import json
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def emit_json(value: Any, one_line: bool = False) -> None:
    """One JSON document; ``one_line`` for streams of documents (JSON Lines)."""
    click.echo(json.dumps(value, indent=None if one_line else 2, ensure_ascii=False))


def line(text: str) -> None:
    """A plain line of data, never wrapped or interpreted as markup."""
    click.echo(text)


def note(text: str) -> None:
    """Something for the person at the terminal, on stderr; scripts get none of it."""
    if stderr.is_terminal:
        stderr.print(Text(text, style="dim"))


def error(message: str) -> None:
    """The one line an error gets, on stderr."""
    click.echo(f"error: {' '.join(message.split())}", err=True)


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None,
          header: bool = True) -> Table:
    """A Rich table of plain values (no markup is read from the data)."""
    shown = Table(title=title, title_justify="left", show_edge=False, header_style="bold",
                  show_header=header)
    for column in columns:
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(*(Text("" if value is None else str(value)) for value in row))
    return shown


def fields(items: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column table of names and values."""
    return table(["", ""], items, title=title, header=False)


def show(renderable: Any) -> None:
    stdout.print(renderable)
