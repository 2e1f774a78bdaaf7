"""A running Triton's model control (explicit mode), behind the admin key.

Triton serves a new version folder only after the model is loaded again; a version that fails
to load leaves the previous one serving (both checked against Triton 2.51 in the tests).
"""

from __future__ import annotations

from pathlib import Path

from maas.add_model.declarations import AddModelError
from maas.server.supervisor import clean_reason


class LiveServer:
    def __init__(self, url: str, key_file: Path | None = None) -> None:
        import tritonclient.http as httpclient

        from maas_client.admin_key import find_key, headers
        from maas_client.urls import normalize_url

        self.url = normalize_url(url)
        self.headers = headers(find_key(key_file))
        self.client = httpclient.InferenceServerClient(self.url, network_timeout=600)
        if not self._call(self.client.is_server_live, "check it"):
            raise AddModelError(f"the server at {self.url} is not live")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> LiveServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, call, doing: str):
        from tritonclient.utils import InferenceServerException

        try:
            return call()
        except InferenceServerException as error:
            message = clean_reason(error.message() or str(error))
            if "restricted" in message.lower() or "unauthorized" in message.lower():
                raise AddModelError(
                    f"the server at {self.url} refused to {doing}: it wants the admin key "
                    "(MAAS_ADMIN_KEY, --key-file, or the server's ~/.cache/maas/admin.key)"
                ) from None
            if "not allowed" in message:
                raise AddModelError(
                    f"the server at {self.url} does not allow loading models: start it with "
                    "`maas serve --model-control` (Triton's explicit model control)"
                ) from None
            raise AddModelError(f"{self.url}: cannot {doing}: {message}") from None
        except (ConnectionError, OSError) as error:
            raise AddModelError(f"no answer from {self.url}: {error}") from None

    def index(self) -> list[dict]:
        return self._call(
            lambda: self.client.get_model_repository_index(headers=self.headers),
            "list its repository",
        )

    def knows(self, name: str) -> bool:
        return any(entry.get("name") == name for entry in self.index())

    def load(self, name: str) -> None:
        self._call(lambda: self.client.load_model(name, headers=self.headers), f"load '{name}'")

    def unload(self, name: str) -> None:
        self._call(lambda: self.client.unload_model(name, headers=self.headers), f"unload '{name}'")

    def ready_versions(self, name: str) -> list[str]:
        entries = self.index()
        ready = [e["version"] for e in entries if e.get("name") == name and e["state"] == "READY"]
        return sorted(ready, key=int)
