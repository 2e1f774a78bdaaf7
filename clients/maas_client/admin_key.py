"""The key that guards Triton's admin APIs (model load/unload, repository index, statistics,
trace, logging, shared memory): anyone who can load a model can run code on the server.

One lookup order for the server and every command that calls those APIs: the environment
variable MAAS_ADMIN_KEY, then a key file (an explicit path, MAAS_ADMIN_KEY_FILE, or
~/.cache/maas/admin.key, created with mode 0600 on the first `maas serve`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path

from maas_client.errors import MaasClientError

HEADER = "maas-admin-key"  # the HTTP header
GRPC_HEADER = f"triton-grpc-protocol-{HEADER}"  # Triton prefixes restricted gRPC metadata keys
KEY_ENV, KEY_FILE_ENV = "MAAS_ADMIN_KEY", "MAAS_ADMIN_KEY_FILE"
# Triton's names for the APIs that change or reveal the server (--http-restricted-api).
ADMIN_APIS = ("model-repository", "statistics", "trace", "logging", "shared-memory")
# With --restrict-inference, the game-facing APIs need the key too; health stays open.
INFERENCE_APIS = ("inference", "model-config", "metadata")


class AdminKeyError(MaasClientError):
    """The key file is missing, unreadable, too open or empty."""


def default_key_file() -> Path:
    cache = os.environ.get("MAAS_CACHE") or Path.home() / ".cache" / "maas"
    return Path(cache) / "admin.key"


def key_file(explicit: Path | None = None) -> Path:
    if explicit is not None:
        return explicit
    from_env = os.environ.get(KEY_FILE_ENV, "").strip()
    return Path(from_env) if from_env else default_key_file()


def find_key(explicit_file: Path | None = None) -> str | None:
    """The admin key if one is configured, else None (the caller then sends no header)."""
    from_env = os.environ.get(KEY_ENV, "").strip()
    if from_env and explicit_file is None:
        return from_env
    path = key_file(explicit_file)
    if not path.exists():
        if explicit_file is not None:
            raise AdminKeyError(f"admin key file {path} does not exist")
        return None
    return _read(path)


def find_or_create_key(explicit_file: Path | None = None) -> tuple[str, Path | None]:
    """The key and the file it came from (None: the environment); a new random key in a 0600
    file when none exists yet. Written aside and linked into place, so a concurrent first start
    reads either no file or a whole one, and two first starts agree on one key."""
    from_env = os.environ.get(KEY_ENV, "").strip()
    if from_env and explicit_file is None:
        return from_env, None
    path = key_file(explicit_file)
    if not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, draft = tempfile.mkstemp(prefix=".admin-key-", dir=path.parent)
            try:
                with os.fdopen(descriptor, "w") as handle:  # mkstemp makes it 0600
                    handle.write(secrets.token_urlsafe(32) + "\n")
                with contextlib.suppress(FileExistsError):  # another start won: use its key
                    os.link(draft, path)
            finally:
                os.unlink(draft)
        except OSError as error:
            raise AdminKeyError(
                f"cannot create admin key file {path}: {error.strerror or error}"
            ) from None
    return _read(path), path


def _read(path: Path) -> str:
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise AdminKeyError(f"cannot read admin key file {path}: {reason}") from None
    mode = info.st_mode
    if info.st_uid != os.getuid():
        raise AdminKeyError(f"admin key file {path} belongs to another user; use your own")
    if mode & 0o077:
        raise AdminKeyError(
            f"admin key file {path} is readable by other users (mode {mode & 0o777:o}); "
            f"run: chmod 600 {path}"
        )
    if not text or any(c.isspace() or c in ",:=" for c in text):
        raise AdminKeyError(
            f"admin key file {path} must hold one word without spaces, ',', ':' or '='"
        )
    return text


def headers(key: str | None) -> dict[str, str]:
    return {HEADER: key} if key else {}


def grpc_headers(key: str | None) -> dict[str, str]:
    return {GRPC_HEADER: key} if key else {}
