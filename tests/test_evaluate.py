"""`evaluate_model`, its report files and ``deepgaze-hub evaluate``, end to end on the synthetic dataset.

The model is a 2-member squeezenet ensemble with random readouts (members made to differ), the
fitted centre bias installed and fold info in its card, so that cross-validated scoring can be
checked image by image without training.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from deepgaze_hub import BackboneConfig, DeepGaze, DeepGazeConfig
from deepgaze_hub.baselines import fit_centerbias, fit_gold_standard
from deepgaze_hub.cli import main
from deepgaze_hub.data import kfold_assignments
from deepgaze_hub.evaluation import METRICS, evaluate_log_densities
from deepgaze_hub.errors import EvaluationError
from deepgaze_hub.evaluation.evaluate import (
    blur_sigmas,
    evaluate_model,
    evaluate_predictions,
)
from deepgaze_hub.evaluation.crossval import held_out_members, names_match
from deepgaze_hub.evaluation.report import write_report
from deepgaze_hub.model.card import ModelCardInfo

SQUEEZE = BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.9", "features.12"])
CROSSVAL = {"dataset": "synthetic", "folds": 2, "fold_seed": 0}


def two_member_model(dataset, card_crossval=CROSSVAL) -> DeepGaze:
    torch.manual_seed(0)
    model = DeepGaze(DeepGazeConfig(backbone=SQUEEZE, num_members=2))
    with torch.no_grad():
        model.finalizer.sigma.copy_(torch.tensor([3.0, 9.0]))
        model.finalizer.centerbias_weight.copy_(torch.tensor([1.0, 0.5]))
    model.set_centerbias(fit_centerbias(dataset).template())
    model.card_info = ModelCardInfo(crossval=dict(card_crossval) if card_crossval else None)
    return model.eval()


@pytest.fixture(scope="module")
def model(synthetic_dataset):
    return two_member_model(synthetic_dataset)


@pytest.fixture(scope="module")
def report(model, synthetic_dataset):
    return evaluate_model(model, synthetic_dataset, crossval=True, progress=False, model_name="squeeze", keep_log_densities=True)


def mean_ll_at_fixations(log_density: torch.Tensor, fixations) -> float:
    rows, cols = fixations.y.astype(int), fixations.x.astype(int)
    return float(log_density.double()[rows, cols].mean())


@torch.no_grad()
def test_crossval_scores_every_image_with_its_held_out_member(report, model, synthetic_dataset):
    folds = kfold_assignments(synthetic_dataset, 2, 0)
    assert [entry["member"] for entry in report.per_image] == folds.tolist()
    assert {k: report.crossval.to_dict()[k] for k in CROSSVAL} == CROSSVAL
    assert report.crossval.images == len(synthetic_dataset)
    for index in [*np.flatnonzero(folds == 0)[:2], *np.flatnonzero(folds == 1)[:2]]:
        image = synthetic_dataset.load_image(index)[None]
        fixations = synthetic_dataset.fixations_of(index)
        held_out = model(image, members=int(folds[index]))[0]
        other = model(image, members=1 - int(folds[index]))[0]
        torch.testing.assert_close(report.log_densities[index], held_out, rtol=0, atol=1e-5)
        assert report.per_image[index]["ll_model"] == pytest.approx(mean_ll_at_fixations(held_out, fixations), abs=1e-5)
        assert abs(mean_ll_at_fixations(other, fixations) - report.per_image[index]["ll_model"]) > 1e-3


def test_rows_columns_and_their_relations(report, synthetic_dataset):
    assert list(report.rows) == ["model", "centre bias", "gold standard", "truth"]
    assert report.columns == ["IG vs uniform", "IG vs centre bias", "LL", *[m for m in METRICS if m not in ("IG", "LL")], "explained IG"]
    rows = report.rows
    height, width = synthetic_dataset.image_sizes[0]
    for row in rows.values():
        # every image has one size: IG vs uniform is LL + log(H W) in bits, and the baselines differ by a constant
        assert row["IG vs uniform"] == pytest.approx((row["LL"] + math.log(height * width)) / math.log(2), abs=1e-9)
        assert row["IG vs uniform"] - row["IG vs centre bias"] == pytest.approx(rows["centre bias"]["IG vs uniform"], abs=1e-9)
        assert row["explained IG"] == pytest.approx(row["IG vs centre bias"] / rows["gold standard"]["IG vs centre bias"])
    assert rows["centre bias"]["IG vs centre bias"] == 0 and rows["centre bias"]["explained IG"] == 0
    assert rows["gold standard"]["explained IG"] == pytest.approx(1.0)
    # the truth beats the centre bias on every metric
    for column, better in [("IG vs centre bias", 1), ("AUC", 1), ("sAUC", 1), ("NSS", 1), ("CC", 1), ("KLDiv", -1), ("SIM", 1)]:
        assert better * (rows["truth"][column] - rows["centre bias"][column]) > 0, column
    # An image-independent map is (nearly) uninformative for sAUC
    assert rows["centre bias"]["sAUC"] == pytest.approx(0.5, abs=0.02)
    # The gold standard predicts each observer from only 7 others with a kernel density estimate, so it
    # falls short of the density the fixations were drawn from: the truth explains more than "all".
    assert rows["truth"]["explained IG"] > 1
    explained = report.explained_information_gain
    assert explained["over_fixations"] == rows["model"]["explained IG"]
    assert explained["over_images"] == pytest.approx(
        np.mean([e["ig_model"] for e in report.per_image]) / np.mean([e["ig_gold_standard"] for e in report.per_image])
    )


def test_model_row_is_the_metrics_of_its_densities(report, synthetic_dataset):
    fixations = synthetic_dataset.fixations
    model_sigma, empirical_sigma = blur_sigmas(synthetic_dataset)
    assert (model_sigma, empirical_sigma) == (pytest.approx(6.0), pytest.approx(23.99 / 4))
    direct = evaluate_log_densities(
        report.log_densities, fixations.x, fixations.y, fixations.image, model_sigma=model_sigma, empirical_sigma=empirical_sigma
    )
    for metric in ("LL", "AUC", "sAUC", "NSS", "CC", "KLDiv", "SIM"):
        assert report.rows["model"][metric] == pytest.approx(direct[metric].value, rel=1e-12), metric
    assert report.rows["model"]["IG vs uniform"] == pytest.approx(direct["IG"].value, rel=1e-9)
    assert report.rows_over_images["model"]["IG vs centre bias"] == pytest.approx(np.mean([e["ig_model"] for e in report.per_image]))


def test_baselines_are_held_out(report, synthetic_dataset):
    centerbias = fit_centerbias(synthetic_dataset)
    fixations = synthetic_dataset.fixations
    area = float(np.prod(synthetic_dataset.image_sizes[0]))
    loo = list(centerbias.crossvalidated_log_densities(synthetic_dataset))
    loo_ll = evaluate_log_densities(loo, fixations.x, fixations.y, fixations.image, metrics=["LL"])["LL"].value
    assert report.rows["centre bias"]["LL"] == pytest.approx(loo_ll, abs=1e-9)
    # the fit's own leave-one-image-out score (kernels at histogram bins) agrees; the in-sample fit scores higher
    assert loo_ll + math.log(area) == pytest.approx(centerbias.cv_log_likelihood, abs=0.01)
    in_sample = centerbias.log_likelihoods(synthetic_dataset).mean()
    assert in_sample > loo_ll + 0.01
    # the gold standard's LL is its leave-one-observer-out log-likelihood
    gold = fit_gold_standard(synthetic_dataset, centerbias)
    assert report.rows["gold standard"]["LL"] == pytest.approx(gold.log_likelihoods(synthetic_dataset).mean(), abs=1e-5)


def test_report_files(report, tmp_path):
    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"json", "markdown", "per_image", "figure"}
    data = json.loads(paths["json"].read_text(), parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert data["rows"]["truth"]["AUC"] == pytest.approx(report.rows["truth"]["AUC"])
    assert {k: data["crossval"][k] for k in CROSSVAL} == CROSSVAL and len(data["per_image"]) == 40
    assert data["explained_information_gain"]["over_images"] == pytest.approx(report.explained_information_gain["over_images"])
    markdown = paths["markdown"].read_text()
    assert markdown == report.to_markdown() + "\n"
    assert "| squeeze |" in markdown and "| gold standard |" in markdown and "IG vs centre bias (bits/fix)" in markdown
    with paths["per_image"].open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 40 and float(table[3]["ig_truth"]) == pytest.approx(report.per_image[3]["ig_truth"])
    assert int(table[0]["member"]) == report.per_image[0]["member"]
    figure = Image.open(paths["figure"])
    assert figure.format == "PNG" and figure.size[0] > 100
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ig_per_image.png", "per_image.csv", "report.json", "report.md"]


def test_crossval_refusals(model, synthetic_dataset):
    without = two_member_model(synthetic_dataset, card_crossval=None)
    with pytest.raises(EvaluationError, match="no cross-validation fold info"):
        held_out_members(without, synthetic_dataset, True)
    other_data = two_member_model(synthetic_dataset, {"dataset": "mit1003", "folds": 2, "fold_seed": 0})
    with pytest.raises(EvaluationError, match="cross-validated on dataset 'mit1003'.*--folds 2 --fold-seed 0"):
        held_out_members(other_data, synthetic_dataset, True)
    with pytest.raises(EvaluationError, match="3 folds needs one member per fold, but the model has 2"):
        held_out_members(model, synthetic_dataset, {"folds": 3, "fold_seed": 0})
    # folds stated explicitly are used as stated, whatever the card says
    members, info = held_out_members(other_data, synthetic_dataset, {"folds": 2, "fold_seed": 1})
    assert np.array_equal(members, kfold_assignments(synthetic_dataset, 2, 1)) and info.fold_seed == 1
    assert held_out_members(without, synthetic_dataset, False) == (None, None)


def test_crossval_checks_the_exact_image_set(synthetic_dataset):
    from deepgaze_hub.data import image_set_digest

    exact = {"dataset": "my recipe key", "folds": 2, "fold_seed": 0, "images": 40, "image_set": image_set_digest(synthetic_dataset)}
    members, _ = held_out_members(two_member_model(synthetic_dataset, exact), synthetic_dataset, True)
    assert np.array_equal(members, kfold_assignments(synthetic_dataset, 2, 0))  # same images: accepted, whatever the name
    subset = dict(exact, image_set=image_set_digest(synthetic_dataset.image_ids[:30]), images=30)
    with pytest.raises(EvaluationError, match=r"another set of images \(30 images"):
        held_out_members(two_member_model(synthetic_dataset, subset), synthetic_dataset, True)


def test_dataset_names():
    class Named:  # what names_match reads of a dataset
        def __init__(self, name, path):
            self.metadata, self.path = {"name": name}, Path(path)

    assert names_match("synthetic", Named("deepgaze-hub default synthetic dataset", "/c/synthetic-default-v1.h5"))
    assert names_match("mit1003", Named("MIT1003", "/data/x.h5"))
    assert names_match("salicon_train", Named("SALICON train (fixations)", "/d/s.h5"))
    assert names_match("mit1003", Named("", "/data/mit1003.h5"))
    assert not names_match("mit1003", Named("CAT2000", "/data/cat.h5"))
    assert not names_match("", Named("MIT1003", "/data/mit1003.h5"))


def test_predictions_are_checked(synthetic_dataset):
    sizes = [tuple(int(v) for v in size) for size in synthetic_dataset.image_sizes]
    uniform = [torch.full(size, -math.log(size[0] * size[1])) for size in sizes]
    with pytest.raises(EvaluationError, match="got 39 log densities for the 40 images"):
        evaluate_predictions(uniform[:-1], synthetic_dataset, progress=False)
    with pytest.raises(EvaluationError, match="has shape .* but image 2"):
        evaluate_predictions(uniform[:2] + [uniform[2][:-1]] + uniform[3:], synthetic_dataset, progress=False)
    with pytest.raises(EvaluationError, match="not a normalised"):
        evaluate_predictions(uniform[:5] + [uniform[5] + 1] + uniform[6:], synthetic_dataset, progress=False)
    with pytest.raises(EvaluationError, match="unknown metrics"):
        evaluate_predictions(uniform, synthetic_dataset, metrics=["AUC", "Judd"], progress=False)


def test_cli_end_to_end_with_exports(model, synthetic_dataset, tmp_path, monkeypatch, capsys):
    model.save_pretrained(tmp_path / "model")
    monkeypatch.setenv("DEEPGAZE_HUB_CACHE", str(synthetic_dataset.path.parent.parent))  # --data embedded finds it
    out, hdf5, mit = tmp_path / "eval", tmp_path / "model.hdf5", tmp_path / "mit"
    argv = ["evaluate", "--model", str(tmp_path / "model"), "--data", "embedded", "--crossval", "--out", str(out)]
    assert main([*argv, "--export-pysaliency", str(hdf5), "--export-mit", str(mit), "--device", "cpu", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "| truth |" in printed and "Explained information gain" in printed and str(out / "report.json") in printed
    report = json.loads((out / "report.json").read_text())
    assert {k: report["crossval"][k] for k in CROSSVAL} == CROSSVAL and report["scoring"].startswith("cross-validated")
    # the pysaliency file holds the scored (held-out) densities, named by image file, normalised
    with h5py.File(hdf5, "r") as handle:
        assert handle.attrs["type"] == "pysaliency.precomputed_models.predictions"
        assert sorted(handle) == sorted(synthetic_dataset.image_names)
        for index in (0, 7):
            stored = handle[synthetic_dataset.image_names[index]][()]
            assert stored.shape == tuple(synthetic_dataset.image_sizes[index])
            assert abs(float(torch.logsumexp(torch.as_tensor(stored).double().flatten(), 0))) < 1e-4
            ll = mean_ll_at_fixations(torch.as_tensor(stored), synthetic_dataset.fixations_of(index))
            assert ll == pytest.approx(report["per_image"][index]["ll_model"], abs=1e-5)
    submission = sorted(mit.iterdir())
    assert len(submission) == 40 and submission[0].suffix == ".jpg"
    assert Image.open(submission[0]).size == (256, 192) and Image.open(submission[0]).mode == "L"


def test_cli_errors(synthetic_dataset, tmp_path, capsys):
    data = ["--data", str(synthetic_dataset.path), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]
    two_member_model(synthetic_dataset, card_crossval=None).save_pretrained(tmp_path / "no-folds")
    assert main(["evaluate", "--model", str(tmp_path / "no-folds"), *data, "--crossval"]) == 1
    assert "no cross-validation fold info" in capsys.readouterr().err
    two_member_model(synthetic_dataset, {"dataset": "mit1003", "folds": 2, "fold_seed": 0}).save_pretrained(tmp_path / "mit")
    assert main(["evaluate", "--model", str(tmp_path / "mit"), *data, "--crossval"]) == 1
    assert "cross-validated on dataset 'mit1003'" in capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "mit"), "--data", str(tmp_path / "missing.h5"), "--quiet"]) == 1
    assert "no such dataset file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gold_standard_scores_each_observer_with_its_own_map(synthetic_dataset, tmp_path):
    """The batched leave-one-observer-out maps score like one `log_density` map per observer and
    image; an image nobody looked at is left out of the per-observer metrics."""
    from deepgaze_hub.data import FixationDataset
    from deepgaze_hub.evaluation.evaluate import gold_standard_scores

    ds = synthetic_dataset
    emptied = 1
    kept = ds.fixations[ds.fixations.image != emptied]
    data = FixationDataset.create(
        tmp_path / "gap.h5", images=[ds.image_bytes(i) for i in range(len(ds))], fixations=kept, image_names=ds.image_names
    )
    centerbias = fit_centerbias(data)
    gold = fit_gold_standard(data, centerbias)
    whole = []

    def score(maps, metrics):
        whole.extend(maps)
        return {}

    results = gold_standard_scores(gold, data, ["LL", "AUC", "NSS", "CC"], score, progress=False)
    assert len(whole) == len(data) and all(torch.equal(m, gold.log_density(data, i)) for i, m in enumerate(whole))
    for metric in ("LL", "AUC", "NSS"):
        assert math.isnan(results[metric].per_image[emptied]) and not results[metric].per_image.isnan().all()
    for index in (0, 2):
        own = data.fixations_of(index)
        observers, local = np.unique(own.observer, return_inverse=True)
        maps = torch.stack([gold.log_density(data, index, observer=int(o)) for o in observers])
        expected = evaluate_log_densities(maps, own.x, own.y, local.reshape(-1), metrics=["LL", "AUC", "NSS"])
        first = int(np.flatnonzero(data.fixations.image == index)[0])
        for metric in ("LL", "AUC", "NSS"):
            torch.testing.assert_close(
                results[metric].per_fixation[first : first + len(own)], expected[metric].per_fixation, rtol=0, atol=1e-12
            )


def test_cli_feature_cache_is_filled_once_then_replaces_the_backbone(model, synthetic_dataset, tmp_path, monkeypatch, capsys):
    """``--features ROOT``: the first run computes and stores every image's features (float32, scores as
    without a cache) in the training-run layout; later runs never run the backbone."""
    from deepgaze_hub.model.deepgaze import DeepGaze as Model
    from deepgaze_hub.training.feature_cache import cache_directory, open_feature_cache

    model.save_pretrained(tmp_path / "model")
    argv = ["evaluate", "--model", str(tmp_path / "model"), "--data", str(synthetic_dataset.path), "--crossval", "--quiet", "--device", "cpu"]
    argv += ["--metrics", "IG,LL,AUC", "--no-gold-standard"]  # equal log densities give equal scores on every metric
    assert main([*argv, "--out", str(tmp_path / "plain")]) == 0
    assert main([*argv, "--out", str(tmp_path / "first"), "--features", str(tmp_path / "features")]) == 0
    directory = cache_directory(tmp_path / "features", model.config)
    assert json.loads((directory / "cache.json").read_text())["dtype"] == "float32"
    assert len(open_feature_cache(tmp_path / "features", model.config)) == len(synthetic_dataset)

    def no_backbone(*args, **kwargs):
        raise AssertionError("the backbone ran although the cache holds every image")

    monkeypatch.setattr(Model, "forward", no_backbone)
    assert main([*argv, "--out", str(tmp_path / "second"), "--features", str(tmp_path / "features")]) == 0
    capsys.readouterr()
    plain, first, second = (json.loads((tmp_path / name / "report.json").read_text()) for name in ("plain", "first", "second"))
    assert f"backbone features read from the float32 feature cache {directory}" in second["scoring"]
    assert "feature cache" not in plain["scoring"]
    for row, values in plain["rows"].items():
        for column, value in values.items():
            assert first["rows"][row][column] == pytest.approx(value, rel=1e-9, abs=1e-12), (row, column)
            assert second["rows"][row][column] == first["rows"][row][column], (row, column)


def test_cli_feature_cache_directory_keeps_its_dtype_and_refuses_other_settings(model, synthetic_dataset, tmp_path, capsys):
    from deepgaze_hub.training.feature_cache import FeatureCache

    model.save_pretrained(tmp_path / "model")
    FeatureCache(tmp_path / "half", model.config, "float16")  # e.g. made by `deepgaze-hub cache-features`
    argv = ["evaluate", "--model", str(tmp_path / "model"), "--data", str(synthetic_dataset.path), "--quiet", "--device", "cpu", "--metrics", "IG"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--features", str(tmp_path / "half"), "--no-gold-standard"]) == 0
    capsys.readouterr()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert f"the float16 feature cache {tmp_path / 'half'}" in report["scoring"]
    assert len(list((tmp_path / "half").glob("shard-*.h5"))) > 0

    other = DeepGaze(DeepGazeConfig(backbone=BackboneConfig(name="squeezenet1_1", weights=None, layers=["features.12"]), num_members=2))
    FeatureCache(tmp_path / "other", other.config, "float32")
    assert main([*argv, "--out", str(tmp_path / "no"), "--features", str(tmp_path / "other")]) == 1
    error = capsys.readouterr().err.strip()
    assert "computed with other settings ['layers']" in error and len(error.splitlines()) == 1
    (tmp_path / "file").write_text("not a folder")
    assert main([*argv, "--out", str(tmp_path / "no"), "--features", str(tmp_path / "file")]) == 1
    assert "cannot create the feature cache" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_features_of_some_images_skip_the_backbone_only_for_those(model, synthetic_dataset):
    from deepgaze_hub.evaluation.evaluate import model_log_densities

    members = np.arange(len(synthetic_dataset)) % 2
    full = model_log_densities(model, synthetic_dataset, members=members, progress=False)
    with torch.no_grad():
        features = {synthetic_dataset.image_ids[i]: model.extract_features(synthetic_dataset.load_image(i)[None])[0] for i in range(0, 12, 3)}
    mixed = model_log_densities(model, synthetic_dataset, members=members, progress=False, features=features)
    for a, b in zip(full, mixed):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
