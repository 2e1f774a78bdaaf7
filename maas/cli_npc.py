"""`maas npc ...`: tools for the people who write NPCs (today: the playtest report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from maas.cli_common import KeyFileOption, RepositoryOption, console, err_console, fail

npc_app = typer.Typer(help="Tools for NPC writers: what players said and how the model fared.")


def playtest_dir() -> Path:
    """Where `maas play` and `maas chat` keep their playtest logs (MAAS_PLAYTEST_DIR)."""
    import os

    from maas.paths import cache_root

    return Path(os.environ.get("MAAS_PLAYTEST_DIR") or cache_root() / "playtest")


@npc_app.command()
def report(
    logs: Annotated[
        list[Path] | None,
        typer.Argument(help="Playtest logs (.jsonl); default: every log in ~/.cache/maas/playtest"),
    ] = None,
    npc: Annotated[str | None, typer.Option(help="Only this NPC (its name)")] = None,
    top: Annotated[int, typer.Option(help="Rows per list", min=1)] = 8,
    margin: Annotated[
        float, typer.Option(help="A near miss: the second line within this of the best", min=0)
    ] = 0.05,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document instead")] = False,
) -> None:
    """Per NPC: fallbacks, /wrong flags and near misses, most frequent first.

    Fallbacks say what players want that no line says yet; near misses, which lines the model
    confuses. Logs are written by `maas play` and `maas chat` (--no-log turns them off)."""
    from maas.npc_report import analyse, render
    from maas_client.playtest_log import read_logs

    paths = logs or sorted(playtest_dir().glob("*.jsonl*"))
    if not paths:
        fail(f"no playtest logs in {playtest_dir()}: play (`maas play`, `maas chat`) first")
    contents = read_logs(paths)
    for skipped in contents.skipped[:5]:
        err_console.print(f"[yellow]skipped[/] {skipped}", highlight=False)
    if len(contents.skipped) > 5:
        err_console.print(f"[yellow]skipped[/] {len(contents.skipped) - 5} more records")
    findings = analyse(contents, margin)
    if npc is not None:
        findings = [f for f in findings if f.npc.lower() == npc.lower()]
        if not findings:
            fail(f"no turns with {npc!r} in {len(paths)} log(s)")
    if not findings:
        fail(f"no turns in {', '.join(map(str, paths))}")
    if as_json:
        print(json.dumps([f.as_dict() for f in findings], indent=2, ensure_ascii=False))
        return
    render(findings, console, top=top)


def register(app: typer.Typer) -> None:
    app.add_typer(npc_app, name="npc")


@npc_app.command()
def rollback(
    repository: RepositoryOption = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Also switch this running server back, live, without a restart"),
    ] = None,
    key_file: KeyFileOption = None,
) -> None:
    """Serve the previous NPC brain again (e.g. MiniLM after the mpnet upgrade).

    The newest version of each NPC model moves to <model>/retired/ (kept; its number is never
    reused). With --url the server switches as the upgrade did: no failed or mixed turn."""
    from maas import brain_upgrade
    from maas.paths import default_repository
    from maas_client.admin_key import find_key, headers
    from maas_client.urls import normalize_url

    target = repository or default_repository()
    address = normalize_url(url) if url else None
    serving = brain_upgrade.rollback(target, address, headers(find_key(key_file)))
    where = f"on {address}" if address else "in the repository (the next start serves it)"
    versions = ", ".join(f"{name} v{version}" for name, version in serving.items())
    console.print(f"NPC brain rolled back {where}: {versions}", highlight=False)
