"""Tokenizer for the NPC dialogue ensemble: QUERY and CANDIDATE strings -> BERT token ids.

Self-contained on purpose (numpy, `tokenizers`, Triton's utils): it runs in the NGC image's
Python backend as well as in the wheel's, without this project installed. The build copies it
into each npc_tokenizer version folder as model.py, beside the encoder's tokenizer.json.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_length = int(parameters.get("MAX_SEQUENCE_LENGTH", "128"))
        self.multiple = int(parameters.get("PAD_TO_MULTIPLE_OF", "16"))
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        try:
            texts = {name: self._texts(request, name) for name in ("QUERY", "CANDIDATE")}
        except ValueError as error:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
            )
        tensors = []
        for name, values in texts.items():
            ids, mask = self._encode(values)
            tensors += [pb_utils.Tensor(f"{name}_IDS", ids), pb_utils.Tensor(f"{name}_MASK", mask)]
        return pb_utils.InferenceResponse(tensors)

    def _encode(self, texts):
        """Padded to a multiple of PAD_TO_MULTIPLE_OF, so turns of similar length share a shape
        and the encoder's dynamic batcher can merge them."""
        encodings = self.tokenizer.encode_batch(texts)
        longest = max((len(e.ids) for e in encodings), default=1)
        width = min(self.max_length, -(-longest // self.multiple) * self.multiple)
        ids = np.zeros((len(encodings), width), np.int64)
        mask = np.zeros((len(encodings), width), np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = encoding.attention_mask
        return ids, mask

    @staticmethod
    def _texts(request, name):
        values = pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)
        texts = []
        for index, value in enumerate(values):
            raw = value if isinstance(value, bytes) else str(value).encode()
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                raise ValueError(
                    f"{name} item {index} is not valid UTF-8 text (bytes {raw[:40]!r})"
                ) from None
        return texts
