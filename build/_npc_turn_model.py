"""npc_turn: one player turn in (the player's line, the NPC's lines), one score per line out.

Why it exists: an NPC's lines are fixed content, so their embeddings are computed once and kept
in a bounded LRU cache; per turn only the player's line goes through the encoder (npc_encoder,
called with BLS). npc_dialogue encodes every line on every turn.

On a CPU-only server the encoder runs inside this model instead (ENCODER_IN_PROCESS "auto"):
the same weights exported by the build as encoder.onnx and run by onnxruntime, so a turn
crosses one backend stub, not two, and onnxruntime's CPU kernels beat libtorch's on these
encoders (docs/benchmarks.md). Where a GPU is visible, where onnxruntime is not installed (the
NGC image's Python), or with "never", it calls npc_encoder: native libtorch on the GPU server.

Self-contained on purpose (numpy, `tokenizers`, Triton's utils; onnxruntime if present): it
runs in the NGC image's Python backend as well as in the wheel's, without this project
installed. The build copies it into each npc_turn version folder as model.py, beside
tokenizer.json, encoder.json (the npc_encoder version it calls: a cache lives in one model
instance, so its entries always come from that one encoder version) and encoder.onnx.
"""

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

ENTRY_OVERHEAD_BYTES = 100  # dict slot, key object and array header, roughly


class EmbeddingCache:
    """Least recently used entries go first when either bound is passed."""

    def __init__(self, max_entries, max_bytes):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.entries = OrderedDict()
        self.bytes = self.hits = self.misses = self.evictions = 0

    @staticmethod
    def size(text, vector):
        return len(text.encode("utf-8")) + vector.nbytes + ENTRY_OVERHEAD_BYTES

    def get(self, text):
        vector = self.entries.get(text)
        if vector is None:
            self.misses += 1
            return None
        self.hits += 1
        self.entries.move_to_end(text)
        return vector

    def put(self, text, vector):
        if text in self.entries or self.size(text, vector) > self.max_bytes:
            return
        self.entries[text] = vector
        self.bytes += self.size(text, vector)
        while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
            old_text, old_vector = self.entries.popitem(last=False)
            self.bytes -= self.size(old_text, old_vector)
            self.evictions += 1


class CacheMetrics:
    """The cache's figures on Triton's /metrics (maas status reads them); absent if the server
    refuses custom metrics, which must not stop the model."""

    NAMES = {  # noqa: RUF012 - constant
        "entries": ("GAUGE", "NPC line embeddings held by npc_turn's cache"),
        "bytes": ("GAUGE", "Bytes held by npc_turn's embedding cache (estimate)"),
        "max_entries": ("GAUGE", "Entry bound of npc_turn's embedding cache"),
        "max_bytes": ("GAUGE", "Byte bound of npc_turn's embedding cache"),
        "hits": ("COUNTER", "NPC lines found in npc_turn's embedding cache"),
        "misses": ("COUNTER", "NPC lines npc_turn had to encode"),
        "evictions": ("COUNTER", "Embeddings dropped by npc_turn's cache bounds"),
    }

    def __init__(self, labels):
        self.families, self.metrics, self.sent = [], {}, {}
        try:
            for key, (kind, description) in self.NAMES.items():
                family = pb_utils.MetricFamily(
                    name=f"maas_npc_cache_{key}",
                    description=description,
                    kind=getattr(pb_utils.MetricFamily, kind),
                )
                self.families.append(family)
                self.metrics[key] = family.Metric(labels=labels)
                self.sent[key] = 0
        except Exception as error:  # an older server: serve without metrics
            pb_utils.Logger.log_warn(f"npc_turn: no cache metrics ({error})")
            self.metrics = {}

    def update(self, cache):
        for key, metric in self.metrics.items():
            value = len(cache.entries) if key == "entries" else getattr(cache, key)
            if self.NAMES[key][0] == "COUNTER":
                metric.increment(value - self.sent[key])
            else:
                metric.set(value)
            self.sent[key] = value

    def close(self):
        self.metrics.clear()  # Metric objects go before their families
        self.families.clear()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.max_length = int(parameters.get("MAX_SEQUENCE_LENGTH", "128"))
        self.multiple = int(parameters.get("PAD_TO_MULTIPLE_OF", "16"))
        self.max_candidates = int(parameters.get("MAX_CANDIDATES", "256"))
        self.chunk = int(parameters.get("ENCODER_BATCH", "64"))
        folder = Path(args["model_repository"]) / args["model_version"]
        encoder = json.loads((folder / "encoder.json").read_text())
        self.encoder_model, self.encoder_version = encoder["model"], int(encoder["version"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_length)
        self.cache = EmbeddingCache(
            int(parameters.get("CACHE_MAX_ENTRIES", "65536")),
            int(parameters.get("CACHE_MAX_BYTES", str(128 * 1024 * 1024))),
        )
        # "stub": Triton 2.51 hands two instances asking for the same family and labels one
        # shared gauge, and frees it when the first goes: with a reload (old and new instance
        # alive together) the survivor wrote into freed memory and Triton aborted.
        labels = {"model": args["model_name"], "version": args["model_version"]}
        self.metrics = CacheMetrics({**labels, "stub": str(os.getpid())})
        self.metrics.update(self.cache)
        self.session, self.runtime = _in_process_encoder(
            folder / "encoder.onnx", parameters.get("ENCODER_IN_PROCESS", "auto")
        )
        pb_utils.Logger.log_info(
            f"npc_turn: encoder {self.runtime}"
            if self.session is not None
            else f"npc_turn: encoder through {self.encoder_model} version {self.encoder_version}"
            f" ({self.runtime})"
        )

    def finalize(self):
        self.metrics.close()

    def execute(self, requests):
        turns, responses = [], [None] * len(requests)
        for index, request in enumerate(requests):
            try:
                turns.append((index, *self._turn(request)))
            except ValueError as error:
                responses[index] = _error(str(error), pb_utils.TritonError.INVALID_ARG)
        try:
            vectors = self._vectors(turns)
        except RuntimeError as error:
            for index, _, _ in turns:
                responses[index] = _error(str(error), pb_utils.TritonError.INTERNAL)
            return responses
        for index, queries, candidates in turns:
            scores = np.stack(
                [
                    np.stack([vectors[c] for c in row]) @ vectors[q]
                    for q, row in zip(queries, candidates)
                ]
            ).astype(np.float32)
            responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor("SCORE", scores)])
        self.metrics.update(self.cache)
        return responses

    def _vectors(self, turns):
        """Every text's embedding: NPC lines from the cache where it has them; player lines are
        looked up but not kept (players rarely repeat themselves, lines always do)."""
        found, missing_lines, missing_queries = {}, [], []
        for _, queries, candidates in turns:
            for row in candidates:
                for text in row:
                    if text in found:
                        continue
                    vector = self.cache.get(text)
                    if vector is None:
                        missing_lines.append(text)
                        found[text] = None
                    else:
                        found[text] = vector
            for text in queries:
                if text not in found:
                    vector = self.cache.entries.get(text)
                    found[text] = vector
                    if vector is None:
                        missing_queries.append(text)
        lines = set(missing_lines)
        texts = list(dict.fromkeys(missing_lines + missing_queries))
        for text, vector in zip(texts, self._encode(texts)):
            found[text] = vector
            if text in lines:
                self.cache.put(text, vector)
        return found

    def _encode(self, texts):
        """Through npc_encoder in chunks of similar length (little padding)."""
        if not texts:
            return []
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        vectors = [None] * len(texts)
        for start in range(0, len(order), self.chunk):
            rows = order[start : start + self.chunk]
            longest = max(len(encodings[i].ids) for i in rows)
            width = min(self.max_length, -(-longest // self.multiple) * self.multiple)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros((len(rows), width), np.int64)
            for row, i in enumerate(rows):
                ids[row, : len(encodings[i].ids)] = encodings[i].ids
                mask[row, : len(encodings[i].ids)] = encodings[i].attention_mask
            for i, vector in zip(rows, self._call_encoder(ids, mask)):
                vectors[i] = vector
        return vectors

    def _call_encoder(self, ids, mask):
        if self.session is not None:
            (vectors,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            return np.asarray(vectors, dtype=np.float32)
        request = pb_utils.InferenceRequest(
            model_name=self.encoder_model,
            model_version=self.encoder_version,
            requested_output_names=["EMBEDDING__0"],
            inputs=[pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask)],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(
                f"npc_turn could not reach its encoder {self.encoder_model} version "
                f"{self.encoder_version}: {response.error().message()}"
            )
        output = pb_utils.get_output_tensor_by_name(response, "EMBEDDING__0")
        return np.array(output.as_numpy(), dtype=np.float32, copy=True)

    def _turn(self, request):
        queries = _texts(request, "QUERY")
        candidates = pb_utils.get_input_tensor_by_name(request, "CANDIDATE").as_numpy()
        if candidates.ndim != 2 or candidates.shape[0] != len(queries):
            raise ValueError(
                f"CANDIDATE must be [batch, lines] with one row per QUERY, got "
                f"{list(candidates.shape)} for {len(queries)} QUERY item(s)"
            )
        if candidates.shape[1] == 0:
            raise ValueError("CANDIDATE holds no NPC lines: send at least one")
        if candidates.shape[1] > self.max_candidates:
            raise ValueError(
                f"CANDIDATE holds {candidates.shape[1]} lines per turn; at most "
                f"{self.max_candidates} (MAX_CANDIDATES in npc_turn's config)"
            )
        rows = [[_decode(v, "CANDIDATE", f"{r},{c}") for c, v in enumerate(row)]
                for r, row in enumerate(candidates)]  # fmt: skip
        return queries, rows


def _gpu_visible():
    """An NVIDIA device node that CUDA_VISIBLE_DEVICES does not hide (no CUDA import here)."""
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1", "none")
    return os.path.exists("/dev/nvidiactl") and not hidden


def _in_process_encoder(path, mode):
    """(onnxruntime session or None, what serves the encoder and why)."""
    if mode not in ("auto", "never"):
        raise ValueError(f"ENCODER_IN_PROCESS is 'auto' or 'never', not {mode!r}")
    if mode == "never":
        return None, "ENCODER_IN_PROCESS is never"
    if not path.exists():
        return None, f"no {path.name} in this version"
    if _gpu_visible():
        return None, "a GPU is visible: npc_encoder runs there"
    try:
        import onnxruntime as ort
    except ImportError:
        return None, "onnxruntime is not installed"
    options = ort.SessionOptions()
    threads = int(os.environ.get("MAAS_FRAMEWORK_THREADS", "0")) or len(os.sched_getaffinity(0))
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    precision = session.get_modelmeta().custom_metadata_map.get("precision", "fp32")
    return session, f"in-process: onnxruntime {ort.__version__}, {precision}, {threads} threads"


def _texts(request, name):
    values = pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)
    return [_decode(value, name, str(index)) for index, value in enumerate(values)]


def _decode(value, name, where):
    raw = value if isinstance(value, bytes) else str(value).encode()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{name} item {where} is not valid UTF-8 text (bytes {raw[:40]!r})"
        ) from None


def _error(message, code):
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
