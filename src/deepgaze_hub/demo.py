"""The main job on embedded data: the whole product, end to end, offline, in minutes on a CPU.

`run_demo` (``deepgaze-hub demo``) takes the embedded synthetic dataset (40 scenes with known true
densities) and

1. fits the centre bias, caches the backbone's features and trains a k-fold DeepGaze ensemble
   with Lightning (the ``synthetic-small`` recipe);
2. evaluates it cross-validated (every image scored by the member that never saw it) against the
   centre bias, the gold standard and the known truth, with every benchmark metric;
3. saves the ensemble as a Hub directory with its model card, reloads it through
   ``DeepGaze.from_pretrained`` and through ``deepgaze_hub.load`` and checks
   that both give the same predictions;
4. writes predictions and figures (as the paper's Figures 4 and 5) for held-out images.

Backbone: ImageNet VGG-19 when torchvision's weights file is already in torch's cache (nothing is
downloaded); otherwise a randomly initialised VGG-19, and the demo says so. Every step is
resumable: rerunning the command reuses finished training and outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import default_dataset
from .data.sampling import sample_fixations
from .evaluation.crossval import held_out_members
from .evaluation.evaluate import evaluate_model
from .evaluation.report import write_report
from .hub import load
from .io.atomic import atomic_path, atomic_save_npy, atomic_write_text
from .io.progress import progress_wanted
from .model.deepgaze import DeepGaze
from .training.recipe import load_recipe
from .training.runner import RecipeRun
from .visualization import density_overlay, fixation_figure, save_png

RECIPE = "synthetic-small"
VGG19_FILE = "vgg19-dcbb9e9d.pth"


@dataclass
class DemoResult:
    """What the demo wrote and measured."""

    out: Path
    model_dir: Path
    imagenet_weights: bool
    table: str
    reload_max_difference: float
    load_max_difference: float
    paths: dict[str, list[Path]] = field(default_factory=dict)
    seconds: float = 0.0


def imagenet_weights_path() -> Path:
    """Where torchvision keeps the VGG-19 ImageNet weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def run_demo(
    out: str | Path = "deepgaze-demo",
    *,
    folds: int = 4,
    epochs: int | None = None,
    shown_images: int = 4,
    log: Callable[[str], None] = print,
    progress: bool | None = None,
) -> DemoResult:
    """Run the demo into ``out`` (see module doc); returns what it wrote.

    ``progress``: progress bars on stderr (Lightning's, the evaluation's); None: only when stderr
    is a terminal.
    """
    progress = progress_wanted() if progress is None else progress
    started = time.perf_counter()
    out = Path(out)
    steps = 5

    log(f"[1/{steps}] data: the embedded synthetic dataset (generated on first use)")
    dataset = default_dataset()
    log(f"      {len(dataset)} images of {dataset.image_sizes[0][1]}x{dataset.image_sizes[0][0]} px, "
        f"{len(dataset.fixations)} fixations of {dataset.num_observers} observers, true densities known")
    imagenet = _report_backbone(log)

    log(f"[2/{steps}] training a {folds}-fold ensemble (centre bias, feature cache, Lightning)")
    model_dir = _train(out / "run", folds, epochs, imagenet, log, progress)

    log(f"[3/{steps}] reloading the saved ensemble ({model_dir}) via from_pretrained and load")
    model = DeepGaze.from_pretrained(model_dir).eval()
    reload_difference, hub_difference = _check_reloads(model, model_dir, dataset, log)

    log(f"[4/{steps}] cross-validated evaluation against the centre bias, gold standard and truth")
    report = evaluate_model(
        model, dataset, crossval=True, gold_standard=True, model_name="DeepGaze (held-out members)", progress=progress
    )
    report_paths = write_report(report, out / "evaluation")

    log(f"[5/{steps}] predictions and figures for {shown_images} held-out images")
    paths = _predictions_and_figures(model, dataset, out, shown_images)
    paths["evaluation"] = [Path(p) for p in report_paths.values()]
    paths["model"] = sorted(model_dir.iterdir())

    result = DemoResult(
        out=out,
        model_dir=model_dir,
        imagenet_weights=imagenet,
        table=report.to_markdown(),
        reload_max_difference=reload_difference,
        load_max_difference=hub_difference,
        paths=paths,
        seconds=time.perf_counter() - started,
    )
    atomic_write_text(out / "summary.md", _summary(result) + "\n")
    log("")
    log(_summary(result))
    return result


def _report_backbone(log: Callable[[str], None]) -> bool:
    """Whether the ImageNet VGG-19 weights are in torch's cache; says which backbone the demo uses."""
    imagenet = imagenet_weights_path().is_file()
    if imagenet:
        log(f"      backbone: VGG-19 with ImageNet weights from {imagenet_weights_path()}")
    else:
        log(
            "      backbone: ImageNet VGG-19 weights are NOT in torch's cache "
            f"({imagenet_weights_path()}), so this demo runs on a RANDOMLY INITIALISED VGG-19.\n"
            "      The readout then learns from random features: the numbers below show the pipeline\n"
            "      working end to end, not DeepGaze II's accuracy. With network access, run\n"
            '      `python -c "import torchvision; torchvision.models.vgg19(weights=\'IMAGENET1K_V1\')"` once, then rerun.'
        )
    return imagenet


def _train(run_dir: Path, folds: int, epochs: int | None, imagenet: bool, log: Callable[[str], None], progress: bool) -> Path:
    """Train the `RECIPE` ensemble (resumable) in ``run_dir``; returns the saved model's directory."""
    overrides = [f"stages.0.folds={folds}", f"model.backbone.weights={'IMAGENET1K_V1' if imagenet else 'null'}"]
    if epochs is not None:
        overrides.append(f"stages.0.epochs={epochs}")
    recipe = load_recipe(RECIPE, overrides)
    return RecipeRun(recipe, run_dir, log=lambda message: log("      " + message), progress=progress).run()


@torch.no_grad()
def _check_reloads(model: DeepGaze, model_dir: Path, dataset, log) -> tuple[float, float]:
    """Largest difference between the trained ensemble and its reloads (from_pretrained, load)."""
    images = torch.stack([dataset.load_image(i) for i in range(2)])
    reference = model(images)
    again = DeepGaze.from_pretrained(model_dir).eval()
    reload_difference = float((again(images) - reference).abs().max())
    log(f"      from_pretrained: max |difference| of log densities {reload_difference:.2e}")
    loaded = load(model_dir).eval()
    hub_difference = float((loaded(images) - reference).abs().max())
    log(f"      deepgaze_hub.load: max |difference| {hub_difference:.2e}")
    if max(reload_difference, hub_difference) > 1e-4:
        raise RuntimeError(f"reloaded models disagree with the trained one ({reload_difference}, {hub_difference})")
    return reload_difference, hub_difference


@torch.no_grad()
def _predictions_and_figures(model: DeepGaze, dataset, out: Path, count: int) -> dict[str, list[Path]]:
    folds, _ = held_out_members(model, dataset, crossval=True)
    chosen = [int(np.flatnonzero(folds == fold)[0]) for fold in range(int(folds.max()) + 1)][:count]
    written: dict[str, list[Path]] = {"predictions": [], "figures": []}
    for index in chosen:
        name = Path(dataset.image_names[index]).stem
        image = dataset.load_image(index)
        log_density = model.predict(image / 255.0, members=int(folds[index]))
        fixations = dataset.fixations_of(index)
        npy, overlay = out / "predictions" / f"{name}.npy", out / "predictions" / f"{name}.png"
        atomic_save_npy(npy, log_density.numpy().astype(np.float32))
        _save_png(overlay, density_overlay(image, log_density))
        sampled = sample_fixations(log_density, len(fixations), seed=index)
        figure = fixation_figure(
            image,
            log_density,
            (fixations.x, fixations.y),
            sampled,
            dataset.true_log_density(index),
            title=f"{name}: held-out member {int(folds[index])}, {len(fixations)} fixations",
        )
        figure_path = out / "figures" / f"{name}.png"
        _save_png(figure_path, figure)
        written["predictions"] += [npy, overlay]
        written["figures"].append(figure_path)
    return written


def _save_png(path: Path, picture) -> None:
    with atomic_path(path) as tmp:
        save_png(picture, tmp)


def _summary(result: DemoResult) -> str:
    backbone = "ImageNet VGG-19" if result.imagenet_weights else "randomly initialised VGG-19 (no ImageNet weights found)"
    lines = [
        f"deepgaze-hub demo finished in {result.seconds:.0f} s. Backbone: {backbone}.",
        "",
        result.table,
        "",
        f"Reloaded ensemble agrees with the trained one: from_pretrained {result.reload_max_difference:.1e}"
        + f", load {result.load_max_difference:.1e}",
        "",
        "Written:",
        f"  model (Hub directory + model card): {result.model_dir}",
    ]
    for kind in ("evaluation", "figures", "predictions"):
        files = result.paths.get(kind, [])
        if files:
            lines.append(f"  {kind}: " + ", ".join(str(p) for p in files[:6]) + (" ..." if len(files) > 6 else ""))
    return "\n".join(lines)
