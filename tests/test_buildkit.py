"""Version folders and recipe discovery: builds add versions, never overwrite them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maas import recipes
from maas.buildkit import ModelCard, next_version_dir, staged_version
from maas.paths import latest_version_dir


def test_each_build_gets_a_new_version_folder(tmp_path):
    model = tmp_path / "mnist"
    model.mkdir()
    (model / "labels.txt").write_text("0\n")
    assert latest_version_dir(model) is None
    first = next_version_dir(model)
    (first / "artifact").write_text("v1")
    (model / "7").mkdir()  # a hand-made version: the next build goes after it
    second = next_version_dir(model)
    assert (first.name, second.name) == ("1", "8")
    assert (first / "artifact").read_text() == "v1"
    assert latest_version_dir(model) == second


def test_staged_version_publishes_only_finished_builds(tmp_path):
    model = tmp_path / "mnist"
    model.mkdir()
    with pytest.raises(RuntimeError), staged_version(model) as stage:
        (stage.path / "half-written").write_text("x")
        raise RuntimeError("interrupted")
    assert list(model.iterdir()) == []  # nothing Triton could try to load
    with staged_version(model) as stage:
        (stage.path / "artifact").write_text("done")
    assert stage.published == model / "1"
    assert (model / "1" / "artifact").read_text() == "done"
    assert [p.name for p in model.iterdir()] == ["1"]


def test_model_card_round_trips_as_json(tmp_path):
    card = ModelCard(model="m", version=3, quick=True, metrics={"test_accuracy": 0.99})
    path = card.write(tmp_path)
    loaded = json.loads(path.read_text())
    assert loaded["version"] == 3 and loaded["metrics"]["test_accuracy"] == 0.99
    assert "python" in loaded["environment"]


def test_recipes_are_found_by_path_and_missing_models_listed(tmp_path):
    assert "mnist" in recipes.available()
    assert recipes.load("mnist").NAME == "mnist"
    assert recipes.missing(tmp_path) == []  # not configured in this repository: not ours to build
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "config.pbtxt").write_text('name: "mnist"\n')
    assert "mnist" in recipes.missing(tmp_path)
    (tmp_path / "mnist" / "1").mkdir()
    assert "mnist" not in recipes.missing(tmp_path)


def test_a_recipe_building_several_models_is_missing_until_all_have_a_version(tmp_path):
    assert recipes.models_of("npc") == (
        "npc_tokenizer",
        "npc_bert",
        "npc_dialogue",
        "npc_encoder",
        "npc_turn",
    )
    for name in recipes.models_of("npc"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text(f'name: "{name}"\n')
        assert "npc" in recipes.missing(tmp_path)
        (tmp_path / name / "1").mkdir()
    assert "npc" not in recipes.missing(tmp_path)


def test_the_recipe_map_is_plain_data_that_agrees_with_each_recipe():
    """The server's "build it with maas build npc" hint reads the map, never a recipe."""
    assert recipes.recipe_for("npc_bert") == "npc" and recipes.recipe_for("mnist") == "mnist"
    assert recipes.recipe_for("my_model") == "my_model"
    for name in recipes.available():
        assert tuple(getattr(recipes.load(name), "MODELS", (name,))) == recipes.models_of(name)


def test_the_independent_held_out_set_shares_no_line_with_training():
    """heldout2 was written without reading the training data; a copied line would flatter it."""
    import re

    from maas.paths import PROJECT_ROOT
    from maas_client.npc_file import load_npcs

    def normal(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())

    data = PROJECT_ROOT / "build" / "data" / "npc"
    training: set[str] = set()
    for path in data.glob("train_dialogue*.yaml"):
        for npc in load_npcs(path):
            training |= {normal(t) for line in npc.lines for t in (line.text, *line.player)}
    import chatterbot_corpus  # the chat pairs the recipe trains on
    import yaml

    for path in (Path(chatterbot_corpus.__file__).parent / "data" / "english").glob("*.yml"):
        for conversation in (yaml.safe_load(path.read_text()) or {}).get("conversations", []):
            training |= {normal(t) for t in conversation if isinstance(t, str)}
    independent = load_npcs(data / "heldout2_dialogue.yaml")
    written = [t for npc in independent for line in npc.lines for t in (line.text, *line.player)]
    written += yaml.safe_load((data / "heldout2_offtopic.yaml").read_text())["offtopic"]
    shared = sorted({normal(t) for t in written} & training - {""})
    assert len(written) > 900 and not shared, shared[:10]
