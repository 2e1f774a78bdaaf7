"""Every public model, HTTP and gRPC, against the bad-input matrix (tests/bad_requests.py): a
clear client error where the request is the client's mistake, the known exceptions named, and
the server serving the next valid request after every one of them."""

from __future__ import annotations

import pytest

from tests.bad_requests import Outcome, markdown, run_matrix

CLIENT_ERROR = {"400", "INVALID_ARGUMENT"}
# Triton 2.51's own HTTP front end answers 500 to these client mistakes, in both runtimes
# (the same core); our client library never sends them (tritonclient builds binary tensors).
FRONT_END_500 = {
    "malformed JSON",
    "binary header length < header",
    "string where a number goes",
    "data not matching shape",  # for numeric JSON data; BYTES gets a 400
}
# Values pass every check and are computed: NaN in, NaN out (the native backends do the same).
COMPUTED = {"NaN/Inf values", "10 MB text element", "100 MB body"}
TEXT_MODELS = {"npc_dialogue", "npc_tokenizer", "npc_turn"}  # BYTES data of the wrong length: a 400


def expected(row: Outcome) -> set[str]:
    if row.case in COMPUTED:
        return {"200", "OK"}
    text_data = row.case == "data not matching shape" and row.model in TEXT_MODELS
    if row.protocol == "HTTP" and row.case in FRONT_END_500 and not text_data:
        return {"500"}
    if row.model == "npc_bert" and row.case in ("wrong shape", "data not matching shape"):
        # ids and mask of different lengths pass Triton core (both dims are -1) and fail in
        # TorchScript: our backend answers what native libtorch answers, a 500 naming the error
        return {"500", "INTERNAL"}
    return CLIENT_ERROR


@pytest.fixture(scope="module")
def matrix(quick_server) -> list[Outcome]:
    return run_matrix(quick_server.config.http_url, f"127.0.0.1:{quick_server.config.grpc_port}")


def test_the_server_serves_the_next_request_after_every_bad_one(matrix):
    broken = [f"{r.protocol} {r.model} {r.case}" for r in matrix if not r.served_after]
    assert not broken, markdown(matrix)
    assert len(matrix) >= 70


def test_each_bad_request_gets_the_answer_documented(matrix):
    wrong = [
        f"{r.protocol} {r.model} {r.case}: {r.status} ({r.message[:80]})"
        for r in matrix
        if r.status not in expected(r)
    ]
    assert not wrong, "\n".join(wrong)


def test_client_errors_name_what_is_wrong(matrix):
    for row in matrix:
        if row.status in CLIENT_ERROR or row.status in {"500", "INTERNAL"}:
            assert len(row.message) > 20, row
    non_utf8 = [r for r in matrix if r.case == "non-UTF-8 text"]
    assert non_utf8 and all("not valid UTF-8" in r.message for r in non_utf8)  # our backend
    framework = [r for r in matrix if r.status == "INTERNAL" or r.message.startswith("model '")]
    assert framework and all("failed to execute: RuntimeError" in r.message for r in framework)


def test_the_client_library_refuses_non_finite_images_before_sending():
    import numpy as np

    from maas.server.config import free_ports
    from maas_client.digits import DigitClient
    from maas_client.errors import MaasClientError, ServerUnavailableError

    (port,) = free_ports(1)  # nothing listens: a request would be ServerUnavailableError
    images = np.zeros((3, 28, 28), np.float32)
    images[2, 5, 5] = np.inf
    with DigitClient(f"127.0.0.1:{port}") as client:
        with pytest.raises(MaasClientError, match="image 2 holds NaN or infinite") as refused:
            client.probabilities(images)
        assert not isinstance(refused.value, ServerUnavailableError)
