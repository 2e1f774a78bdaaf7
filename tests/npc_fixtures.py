"""The NPC serving path with the untrained base encoder (write_repository from the recipe's
export module), one Triton for the session: tests/test_npc_serving.py and test_npc_turn.py."""

from __future__ import annotations

import importlib.util
import re

import pytest

from maas.paths import PROJECT_ROOT

# npc_turn's cache bounds in the test repository: 6 lines, or about ten 1.7 KB entries.
CACHE_BOUNDS = {"CACHE_MAX_ENTRIES": 6, "CACHE_MAX_BYTES": 17000}


def load_export():
    path = PROJECT_ROOT / "build" / "_npc_export.py"
    spec = importlib.util.spec_from_file_location("npc_export", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def export():
    return load_export()


@pytest.fixture(scope="session")
def scorer(export):
    return export.make_pair_scorer(export.load_encoder())


@pytest.fixture(scope="session")
def npc_repository(export, scorer, tmp_path_factory):
    repository = export.write_repository(tmp_path_factory.mktemp("npc_repo"), scorer)
    config = repository / "npc_turn" / "config.pbtxt"
    text = config.read_text()
    for key, value in CACHE_BOUNDS.items():  # small, so that tests see evictions
        text = re.sub(rf'"{key}" value: {{ string_value: "\d+" }}',
                      f'"{key}" value: {{ string_value: "{value}" }}', text)  # fmt: skip
    assert all(f'"{v}"' in text for v in CACHE_BOUNDS.values())
    config.write_text(text)
    return repository


@pytest.fixture(scope="session")
def npc_server(npc_repository, tmp_path_factory):
    from maas.server import TritonServer
    from tests.conftest import server_config

    with TritonServer(server_config(npc_repository, tmp_path_factory.mktemp("npc_logs"))) as s:
        yield s


@pytest.fixture(scope="session")
def hf_tokenizer(export):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(export.base_encoder_path()), local_files_only=True)
