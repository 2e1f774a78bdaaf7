"""The commands that change which models exist and serve: add-model, rollback-model,
load-model, unload-model. `register` adds them to the CLI; the work is in maas.add_model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from maas.cli_common import KeyFileOption, RepositoryOption, console, err_console, fail
from maas.paths import default_repository

LiveUrlOption = Annotated[
    str,
    typer.Option("--url", help="The running server (started with `maas serve --model-control`)"),
]


def _log(text: str) -> None:
    err_console.print(escape(text), highlight=False)


def add_model(
    artifact: Annotated[
        Path, typer.Argument(help="TorchScript .pt, SavedModel folder or .onnx file")
    ],
    name: Annotated[str, typer.Option(help="Model name clients call")],
    version: Annotated[int | None, typer.Option(help="Version number (default: next)")] = None,
    max_batch_size: Annotated[
        int | None,
        typer.Option(help="Rows per batch; 0: no batching (default: from the artifact)"),
    ] = None,
    input_: Annotated[
        list[str] | None,
        typer.Option("--input", help="NAME:DTYPE:DIMS, dims without the batch, -1 where they vary"),
    ] = None,
    output: Annotated[
        list[str] | None, typer.Option("--output", help="NAME:DTYPE:DIMS (or NAME::)")
    ] = None,
    example: Annotated[
        Path | None,
        typer.Option(help=".npz with one array per input name, batch dimension included"),
    ] = None,
    instances: Annotated[
        int | None, typer.Option(help="Model instances (default 1)", min=1)
    ] = None,
    no_dynamic_batching: Annotated[
        bool,
        typer.Option("--no-dynamic-batching", help="Do not merge concurrent requests"),
    ] = False,
    signature: Annotated[
        str, typer.Option(help="SavedModel signature (default: serving_default)")
    ] = "",
    repository: RepositoryOption = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Also load it into this running server, without a restart"),
    ] = None,
    key_file: KeyFileOption = None,
    runtime: Annotated[
        str,
        typer.Option(help="ngc-24.10: also run it with the GPU image's frameworks; local: not"),
    ] = "ngc-24.10",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Derive and prove it; write nothing")
    ] = False,
) -> None:
    """Add a model (or a new version of one) from an artifact, proven in a real Triton.

    The config is derived from the artifact, the model proven in a temporary Triton, written to
    the repository and, with --url, loaded live."""
    from maas.add_model.client_example import curl_example, python_example, request_body
    from maas.add_model.install import EXAMPLE_REQUEST, AddRequest
    from maas.add_model.install import add_model as run_add_model
    from maas.validate.pipeline import RUNTIMES

    if runtime not in RUNTIMES:
        fail(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    request = AddRequest(
        artifact=artifact,
        name=name,
        repository=repository or default_repository(),
        version=version,
        max_batch_size=max_batch_size,
        inputs=input_ or [],
        outputs=output or [],
        example=example,
        instances=instances,
        dynamic_batching=False if no_dynamic_batching else None,
        signature=signature,
        url=url,
        key_file=key_file,
        runtime=runtime,
        dry_run=dry_run,
    )
    result = run_add_model(request, log=_log)
    for note in result.notes:
        console.print(f"[dim]- {escape(note)}[/]", highlight=False)
    table = Table(show_header=False, width=min(console.width, 100), title_justify="left")
    table.add_column("check", no_wrap=True, width=22)
    table.add_column("", no_wrap=True, width=2)
    table.add_column("detail", overflow="fold", ratio=1)
    for check, detail in result.checks:
        table.add_row(escape(check), "[green]ok[/]", escape(detail))
    console.print(table)
    config_path = result.model_dir / "config.pbtxt"
    if result.new_model:
        where = "would write" if dry_run else "wrote"
        console.print(f"[bold]{where} {escape(str(config_path))}[/]:", highlight=False)
        console.print(escape(result.config_text.rstrip()), highlight=False)
    version_dir = result.model_dir / str(result.version)
    if dry_run:
        console.print("[bold]Dry run:[/] nothing written.")
        return
    state = f"live on {url}" if result.live else "in the repository"
    console.print(
        f"[bold green]{escape(name)} version {result.version} is {escape(state)}[/] "
        f"({escape(str(version_dir))})",
        highlight=False,
    )
    if not result.live:
        console.print(
            "The next `maas serve` serves it; a server with --model-control loads it with "
            f"`maas load-model {escape(name)} --url HOST:PORT`.",
            highlight=False,
        )
    from maas_backends.common import ModelSpec
    from maas_client.urls import normalize_url

    spec = ModelSpec.from_config(result.config)
    shown_url = normalize_url(url) if url else "127.0.0.1:8000"
    console.print('\n[bold]Call it from Python[/] (pip install "maas\\[client]"):')
    console.print(escape(python_example(spec, result.inputs, shown_url)), highlight=False)
    body = str(version_dir / EXAMPLE_REQUEST)
    console.print("\n[bold]or with curl:[/]")
    console.print(
        escape(curl_example(spec, request_body(spec, result.inputs), shown_url, body)),
        highlight=False,
        soft_wrap=True,
    )


def rollback_model(
    name: Annotated[str, typer.Argument(help="Model to roll back")],
    repository: RepositoryOption = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Also switch this running server back, without a restart"),
    ] = None,
    key_file: KeyFileOption = None,
) -> None:
    """Serve the previous version again; the latest moves to <model>/retired/ (kept)."""
    from maas.add_model.install import rollback_model as run_rollback

    result = run_rollback(name, repository or default_repository(), url, key_file)
    where = f" on {url}" if result.live else " in the repository (the next start serves it)"
    console.print(
        f"{escape(name)}: version {result.retired} retired, version {result.serving} "
        f"serves{escape(where)}",
        highlight=False,
    )


def load_model(
    name: Annotated[str, typer.Argument(help="Model in the server's repository")],
    url: LiveUrlOption = "127.0.0.1:8000",
    key_file: KeyFileOption = None,
) -> None:
    """Load (or reload, picking up new version folders) a model into a running server."""
    from maas.add_model.install import load_model as run_load

    versions = run_load(name, url, key_file)
    console.print(f"{escape(name)}: ready, version(s) {', '.join(versions) or 'none'}")


def unload_model(
    name: Annotated[str, typer.Argument(help="Model to stop serving (its files stay)")],
    url: LiveUrlOption = "127.0.0.1:8000",
    key_file: KeyFileOption = None,
) -> None:
    """Stop serving a model on a running server; `maas load-model` brings it back."""
    from maas.add_model.install import unload_model as run_unload

    run_unload(name, url, key_file)
    console.print(f"{escape(name)}: unloaded from {escape(url)}")


def register(app: typer.Typer) -> None:
    app.command("add-model")(add_model)
    app.command("rollback-model")(rollback_model)
    app.command("load-model")(load_model)
    app.command("unload-model")(unload_model)
