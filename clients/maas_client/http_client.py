"""What every model client shares: one tritonclient HTTP connection and errors a game can show."""

from __future__ import annotations

import http.client
from typing import Any

import numpy as np

from maas_client.errors import MaasClientError, ServerUnavailableError
from maas_client.urls import normalize_url


class ModelClient:
    """One HTTP client (not thread-safe, like tritonclient's): one per thread or task."""

    def __init__(self, url: str | None = None, *, timeout_s: float = 10.0) -> None:
        import tritonclient.http as httpclient

        self._http = httpclient
        self.url = normalize_url(url)
        self._client = httpclient.InferenceServerClient(
            self.url, connection_timeout=timeout_s, network_timeout=timeout_s
        )
        self.last_model_version = ""  # the version that answered the last infer call

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def infer(
        self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]:
        """Binary tensors in and out; server errors become MaasClientError naming the model."""
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, array in inputs.items():
            tensor = self._http.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        requested = [self._http.InferRequestedOutput(name, binary_data=True) for name in outputs]
        result = self._call(model, lambda: self._client.infer(model, tensors, outputs=requested))
        self.last_model_version = str((result.get_response() or {}).get("model_version", ""))
        return {name: result.as_numpy(name) for name in outputs}

    def model_ready(self, model: str) -> bool:
        return bool(self._call(model, lambda: self._client.is_model_ready(model)))

    def config_parameters(self, model: str) -> dict[str, str]:
        """The `parameters` of a model's config: where the server publishes model settings."""
        config = self._call(model, lambda: self._client.get_model_config(model))
        found = config.get("parameters", {}) if isinstance(config, dict) else {}
        return {key: value.get("string_value", "") for key, value in found.items()}

    def _call(self, model: str, call: Any) -> Any:
        from tritonclient.utils import InferenceServerException

        try:
            return call()
        except InferenceServerException as error:
            message = error.message() or str(error)
            if any(word in message for word in ("Connection refused", "timed out", "Broken pipe")):
                raise ServerUnavailableError(f"no answer from {self.url}: {message}") from None
            if "unknown model" in message:  # not built yet, or failed to load
                message += " on the server (`maas status` lists what it has; `maas build` builds)"
            raise MaasClientError(f"{model}: {message}") from None
        except (ConnectionError, OSError, http.client.HTTPException) as error:
            # HTTPException: a kept-alive connection the server closed (it restarted)
            reason = str(error) or type(error).__name__
            raise ServerUnavailableError(f"no answer from {self.url}: {reason}") from None
