"""What save_pretrained writes and from_pretrained accepts: model card, versions, safety checks."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch
import yaml
from hubserver import make_trained_model
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from deepgaze_hub import ConfigError, DeepGaze, DeepGazeConfig, WeightsError
from deepgaze_hub.model.card import CardMetric, ModelCardInfo, build_model_card
from deepgaze_hub.model.files import WEIGHTS_FORMAT_VERSION

INFO = ModelCardInfo(
    name="tiny-test",
    title="Tiny test ensemble",
    datasets=["SALICON", "MIT1003"],
    recipe="recipes/tiny.yaml",
    evaluation=[CardMetric("MIT1003", "IG", 0.912, split="held-out folds", unit="bits/fixation")],
    licenses={"MIT1003": "research use"},
    repo_id="lab/tiny",
)


@pytest.fixture(scope="module")
def model() -> DeepGaze:
    return make_trained_model(num_members=3)


def front_matter(readme: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", readme, re.DOTALL)
    assert match, readme[:200]
    return yaml.safe_load(match.group(1))


def test_save_writes_config_weights_and_a_card_with_metadata(model, tmp_path):
    model.card_info = INFO
    try:
        model.save_pretrained(tmp_path)
    finally:
        model.card_info = None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    readme = (tmp_path / "README.md").read_text()
    metadata = front_matter(readme)
    assert metadata["library_name"] == "deepgaze-hub" and metadata["license"] == "apache-2.0"
    assert "datasets" not in metadata  # names are not Hub dataset ids: none are made up
    assert {"saliency", "eye-tracking", "squeezenet1_1"} <= set(metadata["tags"])
    assert "| MIT1003 | held-out folds | IG | 0.912 bits/fixation |" in readme
    assert 'torch.hub.load("deepgaze-hub/deepgaze-hub", "tiny_test")' in readme
    assert 'DeepGaze.from_pretrained("lab/tiny", revision=' in readme
    assert "- MIT1003: research use." in readme and "Apache-2.0" in readme


CENTRE_BIAS = {"convention": "pysaliency", "bandwidth": 0.0217, "eps": 1e-13}


def test_evaluation_results_parse_back_with_huggingface_hub(model, tmp_path):
    """The card's model-index is what huggingface_hub reads: ModelCard.load and metadata_load."""
    from huggingface_hub import EvalResult, ModelCard, metadata_load

    info = ModelCardInfo(
        title="Fine-tuned test model",
        datasets=["MIT1003", "CAT2000"],
        dataset_ids=["lab/cat2000"],
        base_model=["lab/base-deepgaze"],
        evaluation=[
            CardMetric("MIT1003", "IG vs centre bias", 0.81, "held-out folds", "bits/fixation", centre_bias=CENTRE_BIAS),
            CardMetric("CAT2000", "AUC", 0.87, "test", dataset_id="lab/cat2000"),
        ],
    )
    model.save_pretrained(tmp_path, model_card_kwargs=vars(info))
    card = ModelCard.load(tmp_path / "README.md")
    assert card.data.base_model == "lab/base-deepgaze" and card.data.datasets == ["lab/cat2000"]
    assert card.data.model_name == "Fine-tuned test model"
    first, second = card.data.eval_results
    assert isinstance(first, EvalResult)
    assert (first.task_type, first.task_name) == ("saliency-prediction", "Saliency prediction")
    assert (first.dataset_name, first.dataset_type, first.dataset_split) == ("MIT1003", "MIT1003", "held-out folds")
    assert (first.metric_type, first.metric_name, first.metric_value) == ("ig-vs-centre-bias", "IG vs centre bias", 0.81)
    assert first.metric_args == {"unit": "bits/fixation", "centre_bias": CENTRE_BIAS}
    assert (second.dataset_type, second.metric_type, second.metric_value, second.metric_args) == ("lab/cat2000", "auc", 0.87, None)
    metadata = metadata_load(tmp_path / "README.md")
    (entry,) = metadata["model-index"]
    assert [result["metrics"][0]["value"] for result in entry["results"]] == [0.81, 0.87]
    assert "centre bias: convention pysaliency, bandwidth 0.0217, eps 1e-13" in card.text


def test_backbone_weights_from_the_hub_are_the_base_model():
    config = DeepGazeConfig(backbone={"weights": "hf-hub:timm/vgg19.tv_in1k@" + "0" * 40}, num_members=1)
    card = str(build_model_card(config, ModelCardInfo(base_model=["lab/other"])))
    assert front_matter(card)["base_model"] == ["lab/other", "timm/vgg19.tv_in1k"]
    plain = front_matter(str(build_model_card(DeepGazeConfig(), ModelCardInfo())))
    assert "base_model" not in plain and "model-index" not in plain


def test_card_is_regenerated_on_every_save(model, tmp_path):
    (tmp_path / "README.md").write_text("stale hand-written card\n")
    model.save_pretrained(tmp_path)
    first = (tmp_path / "README.md").read_text()
    assert "stale" not in first and "No evaluation results" in first
    model.save_pretrained(tmp_path, model_card_kwargs={"evaluation": [CardMetric("CAT2000", "AUC", 0.87)]})
    second = (tmp_path / "README.md").read_text()
    assert "| CAT2000 |  | AUC | 0.87 |" in second


def test_card_information_travels_inside_the_weights(model, tmp_path):
    model.card_info = INFO
    try:
        model.save_pretrained(tmp_path / "a")
    finally:
        model.card_info = None
    with safe_open(tmp_path / "a" / "model.safetensors", framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["deepgaze_hub.weights_format"] == "1" and "deepgaze_hub.version" in metadata
    loaded = DeepGaze.from_pretrained(tmp_path / "a")
    assert loaded.card_info == INFO
    loaded.save_pretrained(tmp_path / "b")  # a re-save keeps the card
    assert (tmp_path / "a" / "README.md").read_text() == (tmp_path / "b" / "README.md").read_text()
    subset = DeepGaze.from_pretrained(tmp_path / "a", members=[1])
    assert subset.num_members == 1 and subset.card_info.evaluation == [] and subset.card_info.datasets == INFO.datasets
    x = torch.rand(1, 3, 48, 64) * 255
    with torch.no_grad():
        assert torch.equal(subset(x), model(x, members=1))


def test_card_of_the_vgg_model_explains_where_the_backbone_weights_come_from():
    readme = str(build_model_card(DeepGazeConfig(num_members=10), INFO))
    section = readme.split("## Backbone weights")[1].split("##")[0]
    assert "not** stored in this repository" in section and "IMAGENET1K_V1" in section and "offline" in section
    assert "Backbone weights (not in this repository): CC BY 4.0" in readme
    assert "| ensemble members | 10 |" in readme


def test_a_config_from_a_newer_release_fails_clearly(model, tmp_path):
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(
        ConfigError, match=rf"{re.escape(str(tmp_path / 'config.json'))}: config format_version 99 is newer .*pip install -U"
    ):
        DeepGaze.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "attention_heads": 4}))
    with pytest.raises(ConfigError, match=r"config\.json: unknown field attention_heads"):
        DeepGaze.from_pretrained(tmp_path)


def test_weights_from_a_newer_release_fail_clearly(model, tmp_path):
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file(
        state,
        tmp_path / "model.safetensors",
        metadata={"deepgaze_hub.weights_format": str(WEIGHTS_FORMAT_VERSION + 1), "deepgaze_hub.version": "9.0"},
    )
    newer = WEIGHTS_FORMAT_VERSION + 1
    with pytest.raises(WeightsError, match=rf"weights format {newer}, written by deepgaze-hub 9\.0.*pip install -U"):
        DeepGaze.from_pretrained(tmp_path)


def test_files_of_the_first_release_layout_still_load(model, tmp_path):
    """0.1.0 wrote config.json + safetensors with only format/library metadata (no card, no weights format)."""
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt", "library": "deepgaze-hub"})
    config = json.loads((tmp_path / "config.json").read_text())
    del config["format_version"]  # absent means the first format
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = DeepGaze.from_pretrained(tmp_path)
    assert loaded.card_info is None
    x = torch.rand(1, 3, 48, 64) * 255
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_a_directory_with_only_pickles_is_refused_without_unpickling(model, tmp_path):
    marker = tmp_path / "was-unpickled"

    class Trap:
        def __reduce__(self):
            return (Path.write_text, (marker, "unpickled!"))

    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps(Trap()))
    with pytest.raises(WeightsError, match=r"only pickle files \['pytorch_model\.bin'\]"):
        DeepGaze.from_pretrained(tmp_path)
    assert not marker.exists()


def test_non_finite_weights_are_refused(model, tmp_path):
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["readout.layers.1.bias"][0, 0] = float("nan")
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match=r"NaN or infinite values in \['readout\.layers\.1\.bias'\]"):
        DeepGaze.from_pretrained(tmp_path)


def test_a_card_cites_the_model_s_own_paper_and_names_every_backbone():
    from deepgaze_hub.model import BackboneConfig, DeepGazeConfig, PathwayConfig
    from deepgaze_hub.model.card import ModelCardInfo, build_model_card

    config = DeepGazeConfig(
        backbone=BackboneConfig(name="alexnet", weights=None, layers=["features.10"], channels=[256]),
        pathways=[PathwayConfig(backbone=BackboneConfig(name="resnet50", weights=None, layers=["layer4"], channels=[2048]))],
    )
    own = str(build_model_card(config, ModelCardInfo(citation="@misc{kummerer2015deepgaze1, title={Deep Gaze I}}")))
    assert "@misc{kummerer2015deepgaze1" in own and "kummerer2016deepgaze2" not in own
    assert "`alexnet`, `resnet50` backbones supply" in own
    default = str(build_model_card(DeepGazeConfig(backbone={"weights": None}), ModelCardInfo()))
    assert "kummerer2016deepgaze2" in default and "a frozen `vgg19` backbone supplies" in default
