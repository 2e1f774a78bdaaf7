"""`maas status` as a table that reads whole at 80 columns: full model names, short headers
with a legend, and failure reasons under the table instead of in a column."""

from __future__ import annotations

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from maas.recipes import recipe_for
from maas_client.status import ENCODER_NAMES, CacheStatus, ServerStatus

# Triton's reasons for a configured model without a version folder (index, load error)
UNBUILT = ("No model version was found", "at least one version must be available")

LEGEND = (
    "req: requests, fail: failed, batch: inferences per execution (what dynamic batching "
    "merged), queue/compute: average ms per request"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count / 2**10:.0f} KiB"


def cache_line(cache: CacheStatus) -> str:
    rate = "-" if cache.hit_rate is None else f"{cache.hit_rate:.1%}"
    return (
        f"{cache.model} v{cache.version} line cache: {cache.entries:,} of {cache.max_entries:,} "
        f"lines, {_size(cache.bytes)} of {_size(cache.max_bytes)}; hit rate {rate} "
        f"({cache.hits:,} hits, {cache.misses:,} misses, {cache.evictions:,} evicted)"
    )


def status_view(found: ServerStatus, unbuilt: tuple[str, ...] = ()) -> Group:
    """`unbuilt`: models configured in the server's repository without a version yet, which
    Triton's index does not list at all."""
    health = "[green]ready[/]" if found.ready else "[yellow]live, not ready[/]"
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("model", overflow="fold", ratio=1)  # full names, folded when long
    table.add_column("ver", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for header in ("req", "fail", "batch", "queue", "compute"):
        table.add_column(header, justify="right", no_wrap=True)
    reasons = []
    for m in found.models:
        if any(text in m.reason for text in UNBUILT):  # its build has not written a version
            recipe = recipe_for(m.name)
            reasons.append(Text(f"{m.name}: not built yet (`maas build {recipe}`)", style="yellow"))
        elif m.reason:
            reasons.append(Text(f"{m.name}: {m.reason}", style="yellow"))
        table.add_row(
            m.name,
            m.version or "-",
            m.state,
            str(m.requests),
            str(m.failures),
            "-" if m.avg_batch is None else f"{m.avg_batch:.1f}",
            _ms(m.avg_queue_ms),
            _ms(m.avg_compute_ms),
        )
    parts: list = [Text.from_markup(f"Triton {found.version} at {found.url}: {health}"), table]
    for name in unbuilt:
        reasons.append(Text(f"{name}: not built yet (`maas build {recipe_for(name)}`)", "yellow"))
    if reasons:
        parts += reasons
    for version, width in found.encoders:
        base = ENCODER_NAMES.get(width, "an encoder of another size")
        parts.append(Text(f"NPC brain: {base} (npc_encoder v{version}, {width} numbers a text)"))
    parts += [Text(cache_line(c)) for c in found.caches]
    if found.metrics_error:
        parts.append(Text(found.metrics_error, style="yellow"))
    parts.append(Text(LEGEND, style="dim"))
    return Group(*parts)
