"""Switching a running Triton from one set of model versions to another (a new NPC brain, or
back) without a request that sees two of them mixed.

Loading each model in turn is not enough. The ensemble npc_dialogue resolves "the latest
version" of npc_tokenizer and npc_bert per request, so between the two loads a request would
tokenize for one encoder and encode with the other (MPNet's ids in MiniLM's vocabulary fail).
And npc_turn's old version calls its own npc_encoder version over BLS, which must outlive it.
So, through explicit model control and config overrides:
1. pin each ensemble's steps to the versions serving now;
2. load every model with both the serving and the target version ready (version_policy
   specific), callees before callers;
3. pin the ensembles to the target versions: one load, the switch point for npc_dialogue;
   npc_turn's switch point is step 2 (its newest version takes new requests once ready);
4. `before_settle` (a rollback retires the newer folders here), then reload every model from its
   own config.pbtxt, callers before callees (the old versions go), and the ensembles last.
A step that fails stops the switch where it is: what served before still serves.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from maas.errors import MaasError


class SwapError(MaasError):
    """A model did not load; the previous versions still serve."""


class LiveSwap:
    def __init__(
        self, url: str, headers: dict[str, str], repository: Path, *, timeout_s: float = 900
    ) -> None:
        import tritonclient.http as httpclient

        self.repository = repository  # the server's: each model's own config.pbtxt at the end
        self.client = httpclient.InferenceServerClient(url, network_timeout=timeout_s)
        self.headers = headers

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> LiveSwap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the server has -------------------------------------------------------------------
    def ready_versions(self) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for entry in self._call("read the repository index", self._index):
            if entry.get("state") == "READY" and entry.get("version"):
                found.setdefault(entry["name"], []).append(int(entry["version"]))
        return {name: sorted(versions) for name, versions in found.items()}

    def _index(self) -> list[dict[str, Any]]:
        return self.client.get_model_repository_index(headers=self.headers)

    def file_config(self, name: str) -> dict[str, Any]:
        """config.pbtxt as the load API takes it. A plain load would not do: Triton skips a
        model whose folder has not changed, so an override would stay."""
        from maas.model_config import ConfigError, read_config

        try:
            return read_config(self.repository / name / "config.pbtxt")
        except ConfigError as error:
            raise SwapError(f"cannot read {error}") from None

    def load(self, name: str, config: dict[str, Any] | None = None) -> None:
        text = json.dumps(config) if config is not None else None
        self._call(
            f"load {name}", lambda: self.client.load_model(name, headers=self.headers, config=text)
        )
        self._settle()

    def _settle(self, timeout_s: float = 120) -> None:
        """Until no version is still loading or unloading. A load returns once the new version
        is ready, while the old one unloads behind it; Triton 2.51 was seen corrupting its heap
        (abort) when the next load overlapped such an unload."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            busy = [
                e for e in self._call("read the repository index", self._index)
                if e.get("state") in ("LOADING", "UNLOADING")
            ]  # fmt: skip
            if not busy:
                return
            time.sleep(0.1)
        raise SwapError(f"models still changing after {timeout_s:.0f} s: {busy}")

    def _call(self, doing: str, call: Callable[[], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        from maas.server.supervisor import clean_reason

        try:
            return call()
        except InferenceServerException as error:
            reason = clean_reason(error.message() or str(error))
            raise SwapError(f"cannot {doing}: {reason}") from None
        except (ConnectionError, OSError) as error:
            raise SwapError(f"cannot {doing}: no answer ({error})") from None

    # -- the switch ----------------------------------------------------------------------------
    def switch(
        self,
        models: Sequence[str],
        target: dict[str, int] | Callable[[], dict[str, int]],
        *,
        publish: Callable[[], None] | None = None,
        before_settle: Callable[[], None] | None = None,
    ) -> None:
        """Serve `target` (model -> version, or what gives it once published; every
        non-ensemble model of `models`, in the order callees first) instead of what serves now.

        `publish` puts the target's version folders into the repository, after the ensembles
        are pinned: loading an ensemble also reloads its steps' models from disk when their
        folders changed, which with new versions already there would end the old ones before
        the pin. Raises SwapError where it stopped."""
        serving = self.ready_versions()
        configs = {name: self.file_config(name) for name in models}
        ensembles = [n for n in models if configs[n].get("platform") == "ensemble"]
        plain = [n for n in models if n not in ensembles]
        now = {n: serving[n][-1] for n in plain if serving.get(n)}
        live_ensembles = [e for e in ensembles if serving.get(e)]
        for name in live_ensembles:  # 1
            if all(step["model_name"] in now for step in _steps(configs[name])):
                self.load(name, pinned(configs[name], now))
        if publish is not None:
            publish()
        target = target() if callable(target) else target
        missing = [n for n in plain if n not in target]
        if missing:
            raise SwapError(f"no target version for {', '.join(missing)}")
        for name in plain:  # 2
            versions = sorted({target[name], *([now[name]] if name in now else [])})
            self.load(name, with_versions(configs[name], versions))
        for name in live_ensembles:  # 3
            self.load(name, pinned(configs[name], target))
        if before_settle is not None:  # 4
            before_settle()
        for name in reversed(plain):
            self.load(name, configs[name])
        for name in ensembles:
            self.load(name, configs[name])


def _steps(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config.get("ensemble_scheduling", {}).get("step", [])


def pinned(config: dict[str, Any], versions: dict[str, int]) -> dict[str, Any]:
    """An ensemble's config with each step on a fixed version (-1 where none is given)."""
    changed = copy.deepcopy(config)
    for step in _steps(changed):
        step["model_version"] = versions.get(step["model_name"], -1)
    return changed


def with_versions(config: dict[str, Any], versions: Sequence[int]) -> dict[str, Any]:
    changed = copy.deepcopy(config)
    changed["version_policy"] = {"specific": {"versions": [int(v) for v in versions]}}
    return changed


def newest_versions(repository: Path, models: Sequence[str]) -> dict[str, int]:
    """Each model's newest version folder on disk: what a plain load would serve."""
    from maas.paths import latest_version_dir

    found = {}
    for name in models:
        folder = latest_version_dir(repository / name)
        if folder is not None:
            found[name] = int(folder.name)
    return found
