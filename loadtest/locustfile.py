"""Players talking and drawing, as load on Triton's HTTP protocol with binary tensors.

Run through `maas loadtest` (headless, reports under reports/) or directly:
    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000
Each request's content is checked (shapes, score range, probabilities), not only its status.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from locust import User, between, constant, events, task
from locust.exception import StopUser

from maas_client.drawing import load_drawing_file, prepare, typed_digit_files
from maas_client.npc_file import load_npcs
from maas_client.player_profile import DRAW_WEIGHT, TALK_WEIGHT, THINK_TIME_S
from maas_client.urls import normalize_url

HERE = Path(__file__).resolve().parent
TYPED_DIGITS = typed_digit_files()
# The characters players talk to: the game's adventure, read as data (the load test does not
# need the game, or Textual); MAAS_LOADTEST_NPCS names another NPC or adventure file.
NPC_FILE = Path(
    os.environ.get("MAAS_LOADTEST_NPCS")
    or HERE.parent / "clients" / "maas_game" / "content" / "lantern_vault.yaml"
)
PLAYER_LINES = [
    "hey there",
    "how much for a bed tonight?",
    "any news around here",
    "wheres the smithy",
    "thx a lot",
    "what do you have to eat",
    "how do i open the cellar",
    "who are you anyway",
    "u smell like fish lol",
    "is it dangerous outside?",
    "gotta go, bye",
    "what's the story with the crypt",
]


REQUEST_LOG = os.environ.get("MAAS_REQUEST_LOG")  # `maas loadtest --soak` reads it afterwards
if REQUEST_LOG:
    _request_log = open(REQUEST_LOG, "a", buffering=1 << 16)  # noqa: SIM115 - closed on quit

    @events.request.add_listener
    def log_request(name: str, response_time: float, exception: object, **_: object) -> None:
        failed = int(exception is not None)
        _request_log.write(f"{time.time():.3f},{name},{response_time:.2f},{failed}\n")

    @events.quitting.add_listener
    def close_request_log(**_: object) -> None:
        _request_log.close()


class ContentError(Exception):
    """A 200 whose tensors are not what the model promises."""


class TritonUser(User):
    """Times each tritonclient call and reports it to Locust (tritonclient.http runs on
    geventhttpclient, so it cooperates with Locust's gevent)."""

    abstract = True
    # A player reads the reply, thinks, types; MAAS_THINK_TIME=0 removes the pause (stress).
    # `maas plan` sizes servers from the same profile.
    wait_time = constant(0) if os.environ.get("MAAS_THINK_TIME") == "0" else between(*THINK_TIME_S)

    def on_start(self) -> None:
        if not self.host:
            raise StopUser("no --host given (e.g. --host http://127.0.0.1:8000)")
        self.client = httpclient.InferenceServerClient(normalize_url(self.host), network_timeout=30)

    def on_stop(self) -> None:
        self.client.close()

    def infer(self, name: str, model: str, inputs: dict[str, np.ndarray], output: str, check):
        tensors = []
        for key, array in inputs.items():
            dtype = "BYTES" if array.dtype == np.object_ else "FP32"
            tensor = httpclient.InferInput(key, list(array.shape), dtype)
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        wanted = [httpclient.InferRequestedOutput(output, binary_data=True)]
        started = time.perf_counter()
        error: Exception | None = None
        length = 0
        try:
            result = self.client.infer(model, tensors, outputs=wanted)
            values = result.as_numpy(output)
            length = values.nbytes
            check(values)
        except Exception as caught:  # every failure is reported to Locust, none stops the user
            error = caught
        self.environment.events.request.fire(
            request_type="infer",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context={},
        )


class TalkingPlayer(TritonUser):
    """The player's line against the whole repertoire of one of the game's characters."""

    weight = TALK_WEIGHT

    def on_start(self) -> None:
        super().on_start()
        self.npcs = load_npcs(NPC_FILE)
        self.turn = 0

    @task
    def talk(self) -> None:
        npc = self.npcs[self.turn % len(self.npcs)]
        said = PLAYER_LINES[self.turn % len(PLAYER_LINES)]
        self.turn += 1
        lines = npc.texts
        queries = np.array([[said.encode()]] * len(lines), dtype=np.object_)
        candidates = np.array([[t.encode()] for t in lines], dtype=np.object_)

        def check(scores: np.ndarray) -> None:
            if scores.shape != (len(lines), 1):
                raise ContentError(f"SCORE shape {scores.shape}, expected {(len(lines), 1)}")
            if not np.isfinite(scores).all() or np.abs(scores).max() > 1.0001:
                raise ContentError("SCORE outside the cosine range -1..1")

        self.infer(
            "npc_dialogue",
            "npc_dialogue",
            {"QUERY": queries, "CANDIDATE": candidates},
            "SCORE",
            check,
        )


class DrawingPlayer(TritonUser):
    """One drawing per request, prepared on the client like the game does."""

    weight = DRAW_WEIGHT

    def on_start(self) -> None:
        super().on_start()
        self.images = [prepare(load_drawing_file(p)).astype(np.float32) for p in TYPED_DIGITS]
        self.turn = 0

    @task
    def draw(self) -> None:
        image = self.images[self.turn % len(self.images)][None]
        self.turn += 1

        def check(probabilities: np.ndarray) -> None:
            if probabilities.shape != (1, 10):
                raise ContentError(f"PROBABILITIES shape {probabilities.shape}, expected (1, 10)")
            total = float(probabilities.sum())
            if probabilities.min() < 0 or abs(total - 1) > 1e-3:
                raise ContentError(f"PROBABILITIES are not a distribution (sum {total:.4f})")

        self.infer("mnist", "mnist", {"IMAGE": image}, "PROBABILITIES", check)


if __name__ == "__main__":  # debug one user against a running server
    from locust import run_single_user

    TalkingPlayer.host = "http://127.0.0.1:8000"
    run_single_user(TalkingPlayer)
