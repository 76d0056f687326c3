"""The model card: the README.md that describes a saved or published model.

`ModelCardInfo` is what a card says beyond the architecture: where the model comes from (registry
name, recipe, datasets, base model), how well it does (`CardMetric` rows) and under which terms.
The evaluation rows are also written machine-readably, as the card metadata's ``model-index``
(huggingface_hub's `EvalResult`: task ``saliency-prediction``, the dataset, the metric with its
unit and, for scores against a centre bias, that centre bias's convention in the metric's
``args``), so that ``ModelCard.load(...).data.eval_results`` gives them back. A model
carries it as ``model.card_info``; `save_pretrained` stores it inside ``model.safetensors`` (as
header metadata, so it travels with the weights and is covered by their sha256) and writes a fresh
README.md from it and from ``config.json`` on every save. `build_model_card` renders the card.

The card is one of the files a model writes, so it lives with the model: this module imports only
the config and huggingface_hub's card classes.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..io.atomic import atomic_write_text
from .backbone_weights import HUB_WEIGHTS_FILE, hub_repo_id, is_hub_weights
from .config import STORED_WEIGHTS, BackboneConfig, DeepGazeConfig

#: Where the project's hubconf.py lives on GitHub: ``torch.hub.load(TORCH_HUB_REPO, ...)``.
TORCH_HUB_REPO = "deepgaze-hub/deepgaze-hub"
PAPER_URL = "https://arxiv.org/abs/1610.01563"
CODE_LICENSE = "Apache-2.0"
#: Licence of the files a deepgaze-hub repo holds (config, readout weights, centre bias) unless a
#: card says otherwise with ``licenses["weights"]`` (an SPDX id; lower-cased for the metadata).
DEFAULT_WEIGHTS_LICENSE = "Apache-2.0"
TAGS = ("saliency", "eye-tracking", "fixation-prediction", "deepgaze")
#: The model-index task of every evaluation result.
TASK_TYPE = "saliency-prediction"
TASK_NAME = "Saliency prediction"

#: Licences of torchvision backbone weights that we can state with confidence, by (model, weights).
_BACKBONE_WEIGHT_LICENSES = {
    ("vgg19", "IMAGENET1K_V1"): (
        "CC BY 4.0: VGG-19 by K. Simonyan and A. Zisserman (Visual Geometry Group, University of "
        "Oxford), trained on ImageNet; distributed by torchvision as `VGG19_Weights.IMAGENET1K_V1`"
    ),
}
_BACKBONE_WEIGHT_LICENSES[("vgg19", "DEFAULT")] = _BACKBONE_WEIGHT_LICENSES[("vgg19", "IMAGENET1K_V1")]

_CITATION = """@article{kummerer2016deepgaze2,
  title   = {{DeepGaze II}: Reading fixations from deep features trained on object recognition},
  author  = {K{\\"u}mmerer, Matthias and Wallis, Thomas S. A. and Bethge, Matthias},
  journal = {arXiv preprint arXiv:1610.01563},
  year    = {2016}
}"""


@dataclass
class CardMetric:
    """One row of a card's evaluation table (and one result of its ``model-index``).

    Attributes:
        dataset: e.g. ``"MIT1003"``.
        metric: e.g. ``"IG"``, ``"AUC"``, ``"explained information gain"``.
        value: the number, in ``unit``.
        split: which images, e.g. ``"held-out folds (10-fold cross-validation)"``.
        unit: e.g. ``"bits/fixation"``, ``"%"``; empty for unitless scores.
        dataset_id: the Hugging Face Hub dataset id of exactly this data, if it has one (never
            guessed); it becomes the result's dataset ``type``, which is otherwise ``dataset``.
        centre_bias: for a score measured against a centre bias, that centre bias's convention and
            parameters (an evaluation report's ``settings["centre_bias"]``, e.g.
            ``{"convention": "pysaliency", "bandwidth": 0.0217, "eps": 1e-13}``).
    """

    dataset: str
    metric: str
    value: float
    split: str = ""
    unit: str = ""
    dataset_id: str | None = None
    centre_bias: dict[str, Any] | None = None

    def eval_result(self) -> EvalResult:
        """This row as huggingface_hub's `EvalResult` (one entry of the card's ``model-index``)."""
        args = {"unit": self.unit} if self.unit else {}
        if self.centre_bias:
            args["centre_bias"] = dict(self.centre_bias)
        return EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=self.dataset_id or self.dataset,
            dataset_name=self.dataset,
            dataset_split=self.split or None,
            metric_type=metric_type(self.metric),
            metric_name=self.metric,
            metric_value=self.value,
            metric_args=args or None,
        )


def metric_type(label: str) -> str:
    """The model-index metric id of a metric label: ``"IG vs centre bias"`` -> ``"ig-vs-centre-bias"``."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "metric"


@dataclass
class ModelCardInfo:
    """What a model card says beyond the architecture.

    Attributes:
        name: the registry name (``deepgaze_hub.list_models()``), if the model is one.
        title: the card's heading.
        summary: a paragraph on what this model is.
        datasets: names of the data it was trained on (in the card's text).
        dataset_ids: Hugging Face Hub dataset ids of that data, where it has them (the card
            metadata's ``datasets``); never guessed from the names.
        base_model: Hub model id(s) this model was fine-tuned or converted from (the card
            metadata's ``base_model``); backbone weights loaded from the Hub are added to it.
        recipe: the training recipe, as a path under ``hub_configs/``.
        training: how it was trained, in a few sentences.
        evaluation: the evaluation table.
        licenses: extra terms, ``{what: licence}``: ``"weights"`` overrides the licence of the
            repo's files (default Apache-2.0); other keys (dataset names) are listed as stated.
        repo_id: the Hugging Face repo it is published in.
        crossval: for a k-fold ensemble, how images were assigned to members:
            ``{"dataset": name, "folds": k, "fold_seed": s}``; member j did not train on the images
            that `deepgaze_hub.data.kfold_assignments(dataset, k, s)` puts in fold j.
        citation: how to cite the model (BibTeX); default: the DeepGaze II paper.
    """

    name: str | None = None
    title: str | None = None
    summary: str | None = None
    datasets: list[str] = field(default_factory=list)
    dataset_ids: list[str] = field(default_factory=list)
    base_model: list[str] = field(default_factory=list)
    recipe: str | None = None
    training: str | None = None
    evaluation: list[CardMetric] = field(default_factory=list)
    licenses: dict[str, str] = field(default_factory=dict)
    repo_id: str | None = None
    crossval: dict[str, Any] | None = None
    citation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCardInfo:
        """Parse `to_dict` output. Unknown keys (from a newer version) are dropped: a card is descriptive."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        values["evaluation"] = [
            CardMetric(**{k: v for k, v in row.items() if k in {f.name for f in fields(CardMetric)}})
            for row in values.get("evaluation") or []
        ]
        return cls(**values)

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> ModelCardInfo | None:
        """`from_dict` for what a weights file stores: None if it is damaged (a card is descriptive
        only: a damaged one must not block loading)."""
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError, AttributeError):
            return None


class DeepGazeModelCard(ModelCard):
    """A `huggingface_hub.ModelCard` whose ``save`` is atomic like every other output of the package."""

    def save(self, filepath) -> None:
        atomic_write_text(filepath, str(self))


def build_model_card(
    config: DeepGazeConfig,
    info: ModelCardInfo | None = None,
    *,
    library_name: str = "deepgaze-hub",
    tags: list[str] | tuple[str, ...] = TAGS,
) -> DeepGazeModelCard:
    """Render the README.md of a model with architecture ``config`` described by ``info``."""
    info = info or ModelCardInfo()
    backbone = config.backbone
    base_models = list(dict.fromkeys([*info.base_model, *hub_backbones(config)]))
    metadata = ModelCardData(
        library_name=library_name,
        license=info.licenses.get("weights", DEFAULT_WEIGHTS_LICENSE).lower(),
        tags=sorted({*tags, backbone.name} - {"custom"}),
        datasets=list(info.dataset_ids) or None,
        base_model=(base_models[0] if len(base_models) == 1 else base_models) or None,
        model_name=(info.title or info.name or _default_title(config)) if info.evaluation else None,
        eval_results=[row.eval_result() for row in info.evaluation] or None,
    )
    sections = [
        _title(config, info),
        _loading(info),
        _architecture(config),
        _backbone_weights(backbone),
        _evaluation(info),
        _training(info),
        _licenses(backbone, info),
        "## Citation\n\n```bibtex\n" + (info.citation or _CITATION).strip() + "\n```",
    ]
    body = "\n\n".join(section for section in sections if section)
    return DeepGazeModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{body}\n")


def _title(config: DeepGazeConfig, info: ModelCardInfo) -> str:
    members = "a single model" if config.num_members == 1 else f"an ensemble of {config.num_members} members"
    text = [f"# {info.title or _default_title(config)}"]
    if info.summary:
        text.append(info.summary.strip())
    text.append(
        "Predicts where people look in a still image, as a probability density over its pixels. "
        f"This is {members} in the DeepGaze architecture introduced with DeepGaze II ([Kümmerer, "
        f"Wallis & Bethge 2016]({PAPER_URL})): {_backbone_phrase(config)} features, a small "
        "readout network, a blur and a centre-bias prior turn them into a density. The output is a "
        "natural-log density of shape (H, W) for an (H, W) image, `exp(out).sum() == 1`."
    )
    return "\n\n".join(text)


def _default_title(config: DeepGazeConfig) -> str:
    return f"DeepGaze II ({config.backbone.name})"


def hub_backbones(config: DeepGazeConfig) -> list[str]:
    """Hub repo ids of the backbone weights ``config`` loads from the Hub (``hf-hub:owner/name@rev``)."""
    backbones = [config.backbone, *(pathway.backbone for pathway in config.pathways)]
    return [repo for repo in (hub_repo_id(b.weights) for b in backbones) if repo]


def _backbone_phrase(config: DeepGazeConfig) -> str:
    names = [config.backbone.name, *(pathway.backbone.name for pathway in config.pathways)]
    listed = ", ".join(f"`{name}`" for name in names)
    return f"frozen {listed} backbones supply" if len(names) > 1 else f"a frozen {listed} backbone supplies"


def _loading(info: ModelCardInfo) -> str:
    repo = info.repo_id or "<repo id>"
    python = (
        "```python\n"
        "import deepgaze_hub\n"
        + (f'model = deepgaze_hub.load("{info.name}")  # pinned revision, files checked by sha256\n' if info.name else "")
        + f'model = deepgaze_hub.load("hf-hub:{repo}@<commit hash>")\n'
        f'model = deepgaze_hub.DeepGaze.from_pretrained("{repo}", revision="<commit hash>")  # the same\n'
        'log_density = model.predict("image.jpg")  # (H, W) tensor, natural log\n'
        "```"
    )
    if info.name:  # a registry model is also a torch.hub entry point of the project's hubconf.py
        hub = (
            "```python\n"
            "import torch\n"
            f'model = torch.hub.load("{TORCH_HUB_REPO}", "{info.name.replace("-", "_")}")\n'
            "```\n\n"
            "or, with `pip install deepgaze-hub`:\n\n"
        )
    else:
        hub = "With `pip install deepgaze-hub`:\n\n"
    return (
        "## Load it in one line\n\n"
        + hub
        + python
        + "\n\nPin `revision` to a full commit hash for reproducible results. Only `config.json` and "
        "`model.safetensors` are read; loading never unpickles anything."
    )


def _architecture(config: DeepGazeConfig) -> str:
    bb = config.backbone
    channels = ", ".join(map(str, bb.channels)) if bb.channels else "inferred"
    rows = [
        ("backbone", f"`{bb.name}`, " + (f"weights `{bb.weights}`" if bb.weights else "random weights") + " (frozen)"),
        ("tapped layers", ", ".join(f"`{layer}`" for layer in bb.layers) + f" ({channels} channels)"),
        ("ensemble members", str(config.num_members)),
        *(
            (f"backbone {i}", f"`{p.backbone.name}`, {p.num_members} members, readout {'-'.join(map(str, p.readout_channels))}")
            for i, p in enumerate(config.pathways, start=1)
        ),
        ("readout", f"1x1 convolutions {'-'.join(map(str, config.readout_channels))}, {config.nonlinearity}"),
        ("downsampling", f"image / {config.downsample:g} before the backbone; readout grid / {config.readout_factor}"),
        (
            "finalizer",
            f"blur (initial sigma {config.initial_sigma:g}) and centre bias, image / {config.saliency_map_factor}",
        ),
        ("centre bias", f"{config.centerbias_shape[0]}x{config.centerbias_shape[1]} template, resized to each image"),
        ("resizing", config.resize_mode),
        ("config format", f"version {config.format_version}"),
    ]
    table = "\n".join(f"| {key} | {value} |" for key, value in rows)
    return "## Architecture\n\n| | |\n|---|---|\n" + table


def _backbone_weights(backbone: BackboneConfig) -> str:
    if backbone.name == "custom":
        source = (
            "This model uses a custom backbone module that must be passed to `from_pretrained(..., backbone=module)`."
        )
    elif backbone.weights == STORED_WEIGHTS:
        source = (
            f"The `{backbone.name}` backbone weights are stored in this repository's `model.safetensors` "
            "(under `backbones.<i>.`, only the layers up to the last tapped one); they are loaded "
            "strictly with the readouts."
        )
    elif is_hub_weights(backbone.weights):
        source = (
            f"The backbone weights are **not** stored in this repository: they are `{HUB_WEIGHTS_FILE}` of the "
            f"Hugging Face Hub repo [`{hub_repo_id(backbone.weights)}`](https://huggingface.co/{hub_repo_id(backbone.weights)}), "
            f"pinned by commit and sha256 (`{backbone.weights}`), mapped to torchvision's `{backbone.name}` layout. "
            "They are downloaded into the Hugging Face cache on first use and checked on every load; "
            "no pickle file is involved."
        )
    elif backbone.weights is None:
        source = (
            f"The backbone is a randomly initialised `{backbone.name}` (seed {backbone.init_seed}); "
            "it is rebuilt identically on load. Such a model is only useful for tests."
        )
    else:
        source = (
            f"The backbone weights are **not** stored in this repository: they are torchvision's "
            f"`{backbone.name}` weights `{backbone.weights}`, downloaded by torchvision on first use "
            "into its cache (`$TORCH_HOME/hub/checkpoints`) and checked against the hash in their "
            "file name. This keeps the repository small (the readouts and centre bias are a few MB, "
            "the backbone file is hundreds), leaves the backbone under its own licence, and names the "
            "exact file through the torchvision enum. For offline use, put that file into the "
            "torchvision cache beforehand, or convert it to safetensors once and pass "
            '`backbone={"weights": "/path/to/backbone.safetensors"}` to `deepgaze_hub.load`.'
        )
    return "## Backbone weights\n\n" + source


def _evaluation(info: ModelCardInfo) -> str:
    if not info.evaluation:
        return "## Evaluation\n\nNo evaluation results have been recorded for these weights."
    lines = ["## Evaluation", "", "| dataset | split | metric | value |", "|---|---|---|---|"]
    for row in info.evaluation:
        value = f"{row.value:.4g}" + (f" {row.unit}" if row.unit else "")
        metric = row.metric + (f" (centre bias: {_describe_centre_bias(row.centre_bias)})" if row.centre_bias else "")
        lines.append(f"| {row.dataset} | {row.split} | {metric} | {value} |")
    lines += ["", "The same results are in this card's metadata (`model-index`), machine-readable."]
    return "\n".join(lines)


def _describe_centre_bias(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value:.6g}" if isinstance(value, float) else f"{key} {value}" for key, value in settings.items())


def _training(info: ModelCardInfo) -> str:
    lines = []
    if info.training:
        lines.append(info.training.strip())
    if info.datasets:
        lines.append("Datasets: " + ", ".join(info.datasets) + ".")
    if info.recipe:
        lines.append(f"Recipe: `hub_configs/{info.recipe}` in the deepgaze-hub repository.")
    return "## Training\n\n" + "\n\n".join(lines) if lines else ""


def _licenses(backbone: BackboneConfig, info: ModelCardInfo) -> str:
    weights = info.licenses.get("weights", DEFAULT_WEIGHTS_LICENSE)
    lines = [
        "## Licences",
        "",
        f"- deepgaze-hub code: {CODE_LICENSE}.",
        f"- Files of this repository (config, readout weights, centre bias): {weights}.",
        f"- Backbone weights{'' if backbone.weights == STORED_WEIGHTS else ' (not in this repository)'}: "
        f"{backbone_weights_license(backbone)}.",
    ]
    lines += [f"- {what}: {terms.rstrip('.')}." for what, terms in info.licenses.items() if what != "weights"]
    return "\n".join(lines)


def backbone_weights_license(backbone: BackboneConfig) -> str:
    """What we know of the licence of a backbone's weights, as one sentence."""
    if backbone.name == "custom":
        return "those of the user-supplied backbone"
    if backbone.weights is None:
        return "none (random initialisation)"
    if backbone.weights == STORED_WEIGHTS:
        return "those stated for this model's files (see above); ask the model's publisher"
    if is_hub_weights(backbone.weights):
        return f"see the model card of https://huggingface.co/{hub_repo_id(backbone.weights)}"
    known = _BACKBONE_WEIGHT_LICENSES.get((backbone.name, str(backbone.weights)))
    return known or f"see torchvision's documentation of `{backbone.name}` weights `{backbone.weights}`"
