"""Tokenizer for the NPC dialogue ensemble: (QUERY, CANDIDATE) strings -> BERT token ids.

Self-contained on purpose (numpy, `tokenizers`, Triton's utils): it runs in the NGC image's
Python backend as well as in the wheel's, without this project installed.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

OUTPUTS = ("INPUT_IDS", "ATTENTION_MASK", "TOKEN_TYPE_IDS")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_length = int(parameters.get("MAX_SEQUENCE_LENGTH", "128"))
        self.multiple = int(parameters.get("PAD_TO_MULTIPLE_OF", "16"))
        folder = Path(args["model_repository"]) / args["model_version"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length, strategy="longest_first")

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        try:
            queries = self._texts(request, "QUERY")
            candidates = self._texts(request, "CANDIDATE")
        except ValueError as error:
            return pb_utils.InferenceResponse(
                error=pb_utils.TritonError(str(error), pb_utils.TritonError.INVALID_ARG)
            )
        # Always a pair, an empty NPC line too: what Hugging Face's tokenizer does for a batch of
        # pairs (a single call with "" as the pair silently drops it).
        encodings = self.tokenizer.encode_batch(list(zip(queries, candidates)))
        longest = max((len(e.ids) for e in encodings), default=1)
        width = min(self.max_length, -(-longest // self.multiple) * self.multiple)
        arrays = {name: np.zeros((len(encodings), width), np.int64) for name in OUTPUTS}
        for row, encoding in enumerate(encodings):
            n = len(encoding.ids)
            arrays["INPUT_IDS"][row, :n] = encoding.ids
            arrays["ATTENTION_MASK"][row, :n] = encoding.attention_mask
            arrays["TOKEN_TYPE_IDS"][row, :n] = encoding.type_ids
        return pb_utils.InferenceResponse([pb_utils.Tensor(n, arrays[n]) for n in OUTPUTS])

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
                    f"{name} item {index} is not valid UTF-8 text (byte {raw[:40]!r}...)"
                ) from None
        return texts
