"""Evaluating a model on a fixation dataset against its baselines: `evaluate_model`.

Rows of the report (`deepgaze_hub.evaluation.report`):

* **model**: the model's log densities. With ``crossval`` every image is scored by the ensemble
  member that did not train on it (member j scores the images that
  ``kfold_assignments(dataset, folds, fold_seed)`` puts in fold j, as the model card's
  ``crossval`` records); otherwise by the full mixture of all members.
* **centre bias**: scored **leave one image out** (image i by the density of the fixations of all
  *other* images) in one of two conventions (`CenterBiasConvention`, `deepgaze_hub.evaluation.centre_bias`):
  ``"fit"`` (default), `fit_centerbias` on the dataset without the image's own fixations, or
  ``"pysaliency"``, the benchmark's ``CrossvalidatedBaselineModel(bandwidth, eps)``
  (`BenchmarkCenterBias`), so that IG vs centre bias equals what pysaliency reports. Its
  per-fixation log-likelihoods are the baseline of every "IG vs centre bias" and of the explained
  information gain. Its sAUC alone uses one map from all images (the benchmark's situation, a
  centre bias fitted on other data): sAUC compares an image's map with the other images' maps, and
  leave-one-out maps of the other images contain the very fixations being scored, which would push
  the score far below 0.5.
* **gold standard** (optional): `fit_gold_standard` (mixed with the *fitted* centre bias, whatever
  the convention; its IG is measured against the convention's centre bias). IG, LL,
  AUC and NSS score each observer's fixations with the density of the *other* observers on the
  image (leave one observer out, the definition of the explainable information), so it costs one
  map per observer and image (an image's maps are made together, `GoldStandardModel.log_densities`),
  the evaluation's largest cost after the model on CPU; sAUC, CC,
  KLDiv and SIM use one map per image, the density of *all* observers, which contains the scored
  fixations (an optimistic, in-sample reference).
* **truth**: the dataset's true log densities, when it has them (synthetic data).

Every metric uses the map the benchmark derives from a density (`evaluate_log_densities`).
Blur of the CC/KLDiv/SIM maps: the benchmark uses 24 px (model map) and 23.99 px (empirical
fixation map) on MIT images, which are 1024 px on their longer side; by default both are scaled by
(longest image side in the dataset) / 1024, so MIT1003 gets exactly the benchmark's values and the
256 x 192 synthetic set 6.0 / 5.9975 px. Pass ``empirical_sigma`` (pixels; used for both maps) to
choose, e.g. 40 for CAT2000.

Memory: the model's log densities are kept as float32 (H, W) tensors on the CPU, one per image
(about 3 GB for MIT1003); each baseline's maps are built after the previous row's are released, so
at most two rows' maps exist at once. Derived maps (equalised, blurred, empirical) are made a few
images at a time inside the metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..baselines import (
    CenterBiasModel,
    GoldStandardModel,
    fit_centerbias,
    fit_gold_standard,
)
from ..data import FixationDataset
from ..errors import DatasetError, EvaluationError
from .centre_bias import CenterBiasConvention, centre_bias_maps, centre_bias_shared_maps
from .crossval import CrossvalInfo, dataset_label, held_out_members
from .information import explained_information_gain
from .probabilistic import METRICS, evaluate_log_densities
from .report import COLUMNS, ROWS, Column, EvaluationReport, Row, write_report
from .results import MetricResult
from .saliency_maps import EMPIRICAL_SIGMA, MODEL_SIGMA, EmpiricalCache

__all__ = [
    "EvaluationReport",
    "evaluate_model",
    "evaluate_predictions",
    "model_log_densities",
    "write_report",
]

#: Longer image side (pixels) of the MIT images the benchmark's blur sigmas were set for.
REFERENCE_SIDE = 1024
#: How far ``logsumexp`` of a given log density may be from 0.
NORMALISATION_TOLERANCE = 1e-3
#: Images per backbone pass by default: on a 2-core CPU, VGG-19 on 240 x 320 images took 0.126 s per
#: image in batches of 8, 0.139 s in batches of 4, 0.132 s in batches of 16 and 0.275 s one at a time.
BATCH_SIZE = 8
#: Metrics evaluated with the gold standard's leave-one-observer-out densities.
_PER_OBSERVER_METRICS = ("LL", "AUC", "NSS")


def evaluate_model(
    model,
    dataset: FixationDataset,
    *,
    crossval: bool | Mapping[str, int] | CrossvalInfo = False,
    metrics: Sequence[str] | None = None,
    gold_standard: bool = True,
    empirical_sigma: float | None = None,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str | None = None,
    progress: bool = True,
    model_name: str = "model",
    keep_log_densities: bool = False,
    centerbias: CenterBiasConvention | None = None,
    features=None,
) -> EvaluationReport:
    """Score ``model`` (a `DeepGaze`) and the baselines on ``dataset`` (see the module docstring).

    Args:
        crossval: ``False``: the full mixture scores every image. ``True``: every image is scored
            by the member that did not train on it, as recorded in ``model.card_info.crossval``
            (the model must carry it, and its dataset name must match ``dataset``, see
            `names_match`). A `CrossvalInfo` or a dict ``{"folds": k, "fold_seed": s}`` states
            the folds explicitly instead.
        metrics: any of `METRICS` (default all); IG and LL are always computed.
        gold_standard: fit and score the gold standard (needs two observers on some image) and
            report the explained information gain.
        empirical_sigma: blur in pixels of the CC/KLDiv/SIM maps (default: scaled, see module doc).
        batch_size: images per forward pass; device: where the model runs (default: where it is).
        progress: show progress bars; model_name: the model's label in the table.
        keep_log_densities: keep the model's log densities (as scored) in ``report.log_densities``,
            e.g. to export them (`export_pysaliency_hdf5`, `export_mit_submission`).
        centerbias: the centre-bias convention of every "IG vs centre bias" (default: fitted,
            `CenterBiasConvention`).
        features: precomputed backbone features, anything with ``features[image_id]`` -> (C, h, w)
            and ``image_id in features`` (e.g. a `FeatureCache`): the backbone runs only for the
            images it lacks. The report's scoring says where the features came from (their
            ``description``, e.g. "the float16 feature cache DIR").
    """
    started = time.perf_counter()
    members, crossval_info = held_out_members(model, dataset, crossval)
    log_densities = model_log_densities(
        model, dataset, members=members, batch_size=batch_size, device=device, progress=progress, features=features
    )
    scoring = describe_scoring(model, crossval_info)
    if features is not None:
        scoring += f"; backbone features read from {getattr(features, 'description', 'precomputed features')}"
    report = evaluate_predictions(
        log_densities,
        dataset,
        scoring=scoring,
        members=members,
        crossval=crossval_info,
        metrics=metrics,
        gold_standard=gold_standard,
        empirical_sigma=empirical_sigma,
        progress=progress,
        model_name=model_name,
        centerbias=centerbias,
    )
    report.seconds = time.perf_counter() - started
    if keep_log_densities:
        report.log_densities = log_densities
    return report


def describe_scoring(model, crossval: CrossvalInfo | None) -> str:
    """How the model's densities were obtained, in words."""
    if crossval is None:
        return f"full mixture of all {model.num_members} members on every image"
    return (
        f"cross-validated: each image scored by the member that did not train on it "
        f"({crossval.folds} folds, fold seed {crossval.fold_seed})"
    )


@torch.no_grad()
def model_log_densities(
    model,
    dataset: FixationDataset,
    *,
    members: np.ndarray | None = None,
    batch_size: int = BATCH_SIZE,
    device: torch.device | str | None = None,
    progress: bool = True,
    features=None,
) -> list[torch.Tensor]:
    """The model's log density of every image: float32 (H, W) CPU tensors, natural log, each summing to 1.

    ``members``: None for the full mixture, or int (N,) the member that scores each image. Images
    of one size and member are run ``batch_size`` at a time (the backbone once per image); the
    model is put in eval mode on ``device`` for the call and restored afterwards. ``features``:
    anything with ``features[image_id]`` -> the (C, h, w) `extract_features` output of that image
    and ``image_id in features`` (e.g. a feature cache); images it holds are not loaded and skip
    the backbone, the others run through it.
    """
    if batch_size < 1:
        raise EvaluationError(f"batch_size must be >= 1, got {batch_size}")
    groups: dict[tuple[int, int, int, bool], list[int]] = {}
    for i, (height, width) in enumerate(dataset.image_sizes):
        member = -1 if members is None else int(members[i])
        cached = features is not None and dataset.image_ids[i] in features
        groups.setdefault((int(height), int(width), member, cached), []).append(i)
    was_training, original_device = model.training, model.device
    model.eval().to(torch.device(device) if device is not None else original_device)
    results: list[torch.Tensor | None] = [None] * len(dataset)
    try:
        with tqdm(total=len(dataset), desc="model", unit="image", disable=not progress) as bar:
            for (_, _, member, cached), indices in groups.items():
                for start in range(0, len(indices), batch_size):
                    chunk = indices[start : start + batch_size]
                    chosen = None if member < 0 else member
                    if not cached:
                        images = torch.stack([dataset.load_image(i) for i in chunk]).to(model.device)
                        out = model(images, members=chosen)
                    else:
                        stacked = torch.stack([features[dataset.image_ids[i]] for i in chunk]).float().to(model.device)
                        out = model.log_density_from_features(stacked, dataset.image_sizes[chunk[0]], members=chosen)
                    for i, log_density in zip(chunk, out):
                        results[i] = log_density.float().cpu()
                    bar.update(len(chunk))
    finally:
        model.to(original_device).train(was_training)
    return results  # type: ignore[return-value]


def evaluate_predictions(
    log_densities: Sequence[torch.Tensor | np.ndarray],
    dataset: FixationDataset,
    *,
    scoring: str = "log densities as given",
    members: np.ndarray | None = None,
    crossval: CrossvalInfo | None = None,
    metrics: Sequence[str] | None = None,
    gold_standard: bool = True,
    empirical_sigma: float | None = None,
    progress: bool = True,
    model_name: str = "model",
    centerbias: CenterBiasConvention | None = None,
) -> EvaluationReport:
    """Score given log densities (one (H, W) natural-log density per image) and the baselines.

    For any probabilistic model's predictions (tensors or arrays, e.g. read from a pysaliency HDF5
    file; scored on the CPU); see
    `evaluate_model` for the arguments. ``scoring``, ``members`` and ``crossval`` only describe
    how the densities were made, for the report.
    """
    started = time.perf_counter()
    metrics = _checked_metrics(metrics)
    log_densities = _checked_predictions(log_densities, dataset)
    model_sigma, empirical = blur_sigmas(dataset, empirical_sigma)
    map_metrics = [m for m in metrics if m != "IG"]  # IG is derived from LL (see `_row`)
    score = _scorer(dataset, model_sigma, empirical)
    convention = centerbias or CenterBiasConvention()
    centerbias = fit_centerbias(dataset)  # the gold standard mixes it in, whatever the convention
    gold = _fitted_gold_standard(dataset, centerbias) if gold_standard else None
    results = _row_results(log_densities, dataset, (convention, centerbias), gold, score, map_metrics, progress)
    rows, rows_over_images, per_row = _tables(results, dataset)
    report = EvaluationReport(
        model_name=model_name,
        dataset=_dataset_summary(dataset),
        scoring=scoring,
        crossval=crossval,
        rows=rows,
        rows_over_images=rows_over_images,
        per_image=_per_image(dataset, members, per_row),
        settings=_settings(convention, centerbias, gold, model_sigma, empirical),
        notes=_notes(dataset, convention.describe(centerbias), gold is not None, model_sigma, empirical),
    )
    report.seconds = time.perf_counter() - started
    return report


Scorer = Callable[..., dict[str, MetricResult]]


def _scorer(dataset: FixationDataset, model_sigma: float, empirical_sigma: float) -> Scorer:
    """``score(maps, metrics)``: `evaluate_log_densities` of per-image maps on the dataset's fixations."""
    fixations = dataset.fixations
    n = torch.as_tensor(fixations.image)
    empirical = EmpiricalCache()  # every row is scored against the same empirical maps

    def score(maps, metrics: Sequence[str]) -> dict[str, MetricResult]:
        return evaluate_log_densities(
            maps,
            fixations.x,
            fixations.y,
            n,
            metrics=metrics,
            model_sigma=model_sigma,
            empirical_sigma=empirical_sigma,
            empirical_cache=empirical,
        )

    return score


def _fitted_gold_standard(dataset: FixationDataset, centerbias: CenterBiasModel) -> GoldStandardModel:
    try:
        return fit_gold_standard(dataset, centerbias)
    except DatasetError as error:
        raise EvaluationError(f"{dataset.path}: {error}; evaluate without the gold standard (--no-gold-standard)") from None


def _row_results(
    log_densities: list[torch.Tensor],
    dataset: FixationDataset,
    centerbias: tuple[CenterBiasConvention, CenterBiasModel],
    gold: GoldStandardModel | None,
    score: Scorer,
    metrics: Sequence[str],
    progress: bool,
) -> dict[Row, dict[str, MetricResult]]:
    """Every row's metric results; each row's maps are made after the previous row's are released.

    ``centerbias``: the convention of the centre-bias row and the fitted model (see `centre_bias`).
    """
    convention, fitted = centerbias
    maps, log_likelihoods = centre_bias_maps(convention, fitted, dataset)
    results = {Row.CENTRE_BIAS: score(maps, [m for m in metrics if m != "sAUC"])}
    del maps
    if log_likelihoods is not None:  # float64 values of the benchmark's maps, not the float32 copies
        n = torch.as_tensor(dataset.fixations.image)
        results[Row.CENTRE_BIAS]["LL"] = MetricResult.from_fixations("LL", torch.as_tensor(log_likelihoods), n, len(dataset))
    if "sAUC" in metrics:  # one map for all images: see the module docstring
        results[Row.CENTRE_BIAS].update(score(centre_bias_shared_maps(convention, fitted, dataset), ["sAUC"]))
    results[Row.MODEL] = score(log_densities, metrics)
    if gold is not None:
        results[Row.GOLD_STANDARD] = gold_standard_scores(gold, dataset, metrics, score, progress)
    if dataset.has_truth:
        results[Row.TRUTH] = score([torch.from_numpy(dataset.true_log_density(i)).float() for i in range(len(dataset))], metrics)
    return results


def _tables(results: dict[Row, dict[str, MetricResult]], dataset: FixationDataset) -> tuple[dict, dict, dict]:
    """(rows, rows over images, per-image values) of the report, IG against uniform and the centre bias added."""
    n = torch.as_tensor(dataset.fixations.image)
    areas = dataset.image_sizes[:, 0] * dataset.image_sizes[:, 1]
    uniform_ll = -torch.log(torch.as_tensor(areas, dtype=torch.float64))[n]
    baseline_ll = results[Row.CENTRE_BIAS]["LL"].per_fixation
    gold_ll = results[Row.GOLD_STANDARD]["LL"].per_fixation if Row.GOLD_STANDARD in results else None
    rows, rows_over_images, per_row = {}, {}, {}
    for name in [row for row in ROWS if row in results]:
        rows[name], rows_over_images[name], per_row[name] = _row(results[name], uniform_ll, baseline_ll, gold_ll, n, len(dataset))
    return rows, rows_over_images, per_row


def _dataset_summary(dataset: FixationDataset) -> dict[str, Any]:
    return {
        "name": dataset_label(dataset),
        "path": str(dataset.path),
        "images": len(dataset),
        "fixations": len(dataset.fixations),
        "observers": dataset.num_observers,
    }


def blur_sigmas(dataset: FixationDataset, empirical_sigma: float | None = None) -> tuple[float, float]:
    """(model map sigma, empirical map sigma) in pixels for the CC/KLDiv/SIM maps (see module doc)."""
    if empirical_sigma is not None:
        if not empirical_sigma > 0:
            raise EvaluationError(f"empirical_sigma must be > 0 pixels, got {empirical_sigma}")
        return float(empirical_sigma), float(empirical_sigma)
    scale = int(np.max(dataset.image_sizes)) / REFERENCE_SIDE
    return MODEL_SIGMA * scale, EMPIRICAL_SIGMA * scale


def gold_standard_scores(
    gold: GoldStandardModel,
    dataset: FixationDataset,
    metrics: Sequence[str],
    score: Callable[[list, Sequence[str]], dict[str, MetricResult]],
    progress: bool,
) -> dict[str, MetricResult]:
    """The gold standard's results on ``metrics``: LL, AUC, NSS leave one observer out (one map per
    observer and image); the other metrics by ``score`` on the density of all observers.

    The maps of an image (one per observer, and the one of all observers) come from one
    `GoldStandardModel.log_densities` call."""
    fixations = dataset.fixations
    offsets = np.concatenate([[0], np.cumsum(dataset.fixation_counts)])
    per_observer = [m for m in _PER_OBSERVER_METRICS if m in metrics]
    whole_metrics = [m for m in metrics if m not in _PER_OBSERVER_METRICS]
    values = {m: torch.full((len(fixations),), math.nan, dtype=torch.float64) for m in per_observer}
    whole_maps = []
    for i in tqdm(range(len(dataset)), desc="gold standard", unit="image", disable=not progress):
        own = dataset.fixations_of(i)
        observers, local = np.unique(own.observer, return_inverse=True)
        source = (own, dataset.image_sizes) if len(own) else dataset  # the image's fixations: no search through all
        maps = gold.log_densities(source, i, [*(int(o) for o in observers), None])
        if whole_metrics:
            whole_maps.append(maps[-1].clone())  # not a view: the observers' maps are released
        if len(own):
            scored = evaluate_log_densities(maps[:-1], own.x, own.y, local.reshape(-1), metrics=per_observer)
            for m in per_observer:
                values[m][offsets[i] : offsets[i + 1]] = scored[m].per_fixation
    n = torch.as_tensor(fixations.image)
    results = {m: MetricResult.from_fixations(m, values[m], n, len(dataset)) for m in per_observer}
    if whole_metrics:
        results.update(score(whole_maps, whole_metrics))
    return results


def _row(results: dict[str, MetricResult], uniform_ll, baseline_ll, gold_ll, n: torch.Tensor, num_images: int):
    """(row with benchmark averaging, row averaged over images, per-image values) of one model.

    ``uniform_ll``, ``baseline_ll``, ``gold_ll``: (F,) log-likelihoods (nats) of every fixation
    under the uniform density, the centre bias and the gold standard (or None).
    """
    ll = results["LL"].per_fixation
    scores = {
        Column.IG_VS_UNIFORM: MetricResult.from_fixations("IG", (ll - uniform_ll) / math.log(2), n, num_images),
        Column.IG_VS_CENTRE_BIAS: MetricResult.from_fixations("IG", (ll - baseline_ll) / math.log(2), n, num_images),
        **{Column(metric): result for metric, result in results.items()},
    }
    row = {column: float(r.value) for column, r in scores.items()}
    over_images = {column: float(r.mean_over_images) for column, r in scores.items()}
    per_image = {column: r.per_image for column, r in scores.items()}
    if gold_ll is not None:
        explained = explained_information_gain(ll, baseline_ll, gold_ll, n, num_images)
        row[Column.EXPLAINED_IG] = float(explained.over_fixations)
        over_images[Column.EXPLAINED_IG] = float(explained.over_images)
        per_image[Column.EXPLAINED_IG] = explained.per_image
    return tuple({column: values[column] for column in COLUMNS if column in values} for values in (row, over_images, per_image))


def _per_image(dataset: FixationDataset, members: np.ndarray | None, per_row: dict) -> list[dict[str, Any]]:
    model = per_row[Row.MODEL]
    columns = {"ig_model": model[Column.IG_VS_CENTRE_BIAS]}
    for row, key in ((Row.GOLD_STANDARD, "ig_gold_standard"), (Row.TRUTH, "ig_truth")):
        if row in per_row:
            columns[key] = per_row[row][Column.IG_VS_CENTRE_BIAS]
    columns["ll_model"] = model[Column.LL]
    for metric in (Column.AUC, Column.NSS):
        if metric in model:
            columns[f"{metric.lower()}_model"] = model[metric]
    if Column.EXPLAINED_IG in model:
        columns["explained_ig_model"] = model[Column.EXPLAINED_IG]
    entries = []
    for i, count in enumerate(dataset.fixation_counts):
        entry = {
            "index": i,
            "id": dataset.image_ids[i],
            "name": dataset.image_names[i],
            "fixations": int(count),
            "member": None if members is None else int(members[i]),
        }
        entry.update({key: float(values[i]) for key, values in columns.items()})
        entries.append(entry)
    return entries


def _settings(
    convention: CenterBiasConvention, centerbias: CenterBiasModel, gold: GoldStandardModel | None, model_sigma: float, empirical: float
) -> dict[str, Any]:
    return {
        "blur_sigma_px": {"model_map": model_sigma, "empirical_map": empirical},
        "centre_bias": convention.settings(centerbias),
        "gold_standard": None
        if gold is None
        else {
            "bandwidth": gold.bandwidth,
            "centerbias_weight": gold.centerbias_weight,
            "mixed_with": f"fitted centre bias (bandwidth {centerbias.bandwidth:.6g}, uniform weight {centerbias.uniform_weight:.6g})",
            "ig_baseline": f"the centre bias of this report ({convention.kind} convention)",
            "scored": "IG, LL, AUC, NSS leave one observer out; sAUC, CC, KLDiv, SIM on all observers",
        },
        "averaging": {"IG, LL, explained IG": "over fixations", "AUC, sAUC, NSS, CC, KLDiv, SIM": "per image"},
    }


def _notes(dataset: FixationDataset, centre_bias: str, has_gold: bool, model_sigma: float, empirical: float) -> list[str]:
    notes = [
        (
            "IG and LL are averaged over all fixations, the other metrics per image (the benchmark's conventions); "
            "report.json also has every score averaged over images."
        ),
        (
            f"Centre bias: {centre_bias}; each image is scored by the density of the other images' fixations; "
            "it is the baseline of every IG vs centre bias and of the explained IG. Its sAUC uses one map from all images."
        ),
        (
            f"CC, KLDiv and SIM compare the density blurred by {model_sigma:.4g} px with the fixations blurred by "
            f"{empirical:.4g} px."
        ),
    ]
    if has_gold:
        notes.append(
            "Gold standard: a KDE of the other observers' fixations on the image (leave one observer out) mixed with the "
            "fitted centre bias; its IG and the explained IG are measured against the centre bias above. IG, LL, AUC and "
            "NSS predict each observer from the other observers; sAUC, CC, KLDiv and SIM use all observers' fixations, "
            "the scored ones included (in-sample)."
        )
    if has_gold and dataset.has_truth:
        notes.append(
            f"Truth: the densities the fixations were drawn from. Its explained IG can exceed 100%: the gold standard "
            f"estimates the explainable information from only {dataset.num_observers} observers per image with a kernel "
            "density estimate, which falls short of the true density."
        )
    return notes


def _checked_metrics(metrics: Sequence[str] | None) -> list[str]:
    chosen = list(METRICS) if metrics is None else list(metrics)
    unknown = [m for m in chosen if m not in METRICS]
    if unknown:
        raise EvaluationError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    return [m for m in METRICS if m in {*chosen, "IG", "LL"}]


def _checked_predictions(log_densities, dataset: FixationDataset) -> list[torch.Tensor]:
    """The log densities as CPU tensors (no copy for CPU tensors), checked against the dataset."""
    if len(log_densities) != len(dataset):
        raise EvaluationError(f"got {len(log_densities)} log densities for the {len(dataset)} images of {dataset.path}")
    checked = []
    for i, log_density in enumerate(log_densities):
        values = torch.as_tensor(log_density, device="cpu")
        if tuple(values.shape) != tuple(int(v) for v in dataset.image_sizes[i]):
            raise EvaluationError(
                f"log density {i} has shape {tuple(values.shape)}, but image {i} ({dataset.image_names[i]}) is "
                f"{tuple(int(v) for v in dataset.image_sizes[i])} (H, W)"
            )
        total = float(torch.logsumexp(values.reshape(-1).double(), 0))
        if not abs(total) <= NORMALISATION_TOLERANCE:
            raise EvaluationError(
                f"log density {i} ({dataset.image_names[i]}) is not a normalised natural-log density "
                f"(logsumexp = {total:.4g}); subtract its logsumexp first"
            )
        checked.append(values)
    return checked
