"""Reading config.pbtxt with Triton's own protobuf schema (shipped in tritonclient)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maas.errors import MaasError


class ConfigError(MaasError):
    """A config.pbtxt that Triton would reject; the message names the file and the field."""


def read_config(path: Path) -> dict[str, Any]:
    """The config as the JSON dict Triton hands to backends (field names as in the proto)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    try:
        message = text_format.Parse(
            path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig()
        )
    except text_format.ParseError as error:
        raise ConfigError(f"{path}: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
