"""What every command module shares: the consoles, one-line failures and common options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="Triton's HTTP endpoint, HOST:PORT with or without http://"),
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        help="Admin key file (default: $MAAS_ADMIN_KEY, else $MAAS_ADMIN_KEY_FILE, else "
        "~/.cache/maas/admin.key, created on first serve)"
    ),
]
RepositoryOption = Annotated[
    Path | None,
    typer.Option(help="Model repository (default: ./model_repository, else the checkout's)"),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)
