"""config.pbtxt written through Triton's own protobuf schema, so that it parses as Triton does."""

from __future__ import annotations

from typing import Any


def config_text(config: dict[str, Any]) -> str:
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    message = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    return text_format.MessageToString(message)
