"""``deepgaze-hub evaluate``: every benchmark metric for a model and its baselines on a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import EMBEDDED, add_device_argument, add_model_argument, positive_int, resolve_device, show_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model with every benchmark metric against the centre bias, gold standard and truth",
        description=(
            "Score a model on a fixation dataset with IG, LL, AUC, sAUC, NSS, CC, KLDiv and SIM (each on the "
            "saliency map the MIT/Tübingen benchmark derives from a density), next to the centre bias, the gold "
            "standard and, for synthetic data, the true densities; report the explained information gain. Prints "
            "the table and writes report.json, report.md, per_image.csv and ig_per_image.png to --out. With "
            "--crossval every image is scored by the ensemble member that did not train on it."
        ),
    )
    add_model_argument(parser)
    parser.add_argument("--data", required=True, help=f"dataset file (deepgaze-hub data import ...) or '{EMBEDDED}' for the embedded synthetic set")
    parser.add_argument("--crossval", action="store_true", help="score each image with the member that did not train on it (fold info from the model card)")
    parser.add_argument("--folds", type=int, default=None, metavar="K", help="state the cross-validation folds instead of reading them from the model card (implies --crossval)")
    parser.add_argument("--fold-seed", type=int, default=0, metavar="S", help="fold seed with --folds (default 0)")
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default: evaluation)")
    parser.add_argument("--no-gold-standard", action="store_true", help="skip the gold standard (and the explained information gain)")
    parser.add_argument("--metrics", default=None, help="comma-separated subset of IG,LL,AUC,sAUC,NSS,CC,KLDiv,SIM (default: all)")
    parser.add_argument("--empirical-sigma", type=float, default=None, metavar="PX", help="blur of the CC/KLDiv/SIM maps in pixels (default: 24 px scaled to the image size; 40 for CAT2000)")
    parser.add_argument("--centerbias", choices=("fit", "pysaliency"), default="fit", help="baseline of IG vs centre bias: 'fit' (a KDE fitted to the dataset, default) or 'pysaliency' (the benchmark's CrossvalidatedBaselineModel with --centerbias-bandwidth and --centerbias-eps)")
    parser.add_argument("--centerbias-bandwidth", type=float, default=None, metavar="B", help="with --centerbias pysaliency: kernel std as a fraction of the image size (default: MIT1003's 10**-1.6668)")
    parser.add_argument("--centerbias-eps", type=float, default=None, metavar="E", help="with --centerbias pysaliency: uniform weight (default: MIT1003's 10**-14.88)")
    parser.add_argument("--export-pysaliency", type=Path, default=None, metavar="FILE.hdf5", help="also write the evaluated log densities as a pysaliency HDF5 model file")
    parser.add_argument("--export-mit", type=Path, default=None, metavar="DIR", help="also write the densities as MIT benchmark submission images (JPEG, each image's size)")
    parser.add_argument(
        "--features",
        type=Path,
        default=None,
        metavar="DIR",
        help=(
            "backbone feature cache: a cache directory (deepgaze-hub cache-features --out) or a training run's "
            "features/ folder. Images it holds skip the backbone; the others are computed and added to it, so "
            "the next evaluation of any model with this backbone on these images skips it. A new cache is "
            "float32 (scores as without a cache); an existing one is read in its own dtype"
        ),
    )
    parser.add_argument("--batch-size", type=positive_int, default=8, help="images per forward pass (default 8)")
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import open_dataset
    from ..evaluation.centre_bias import CenterBiasConvention
    from ..evaluation.evaluate import evaluate_model
    from ..evaluation.export import export_mit_submission, export_pysaliency_hdf5
    from ..evaluation.report import write_report
    from ..hub import load

    metrics = None if args.metrics is None else [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.folds is not None:
        crossval = {"folds": args.folds, "fold_seed": args.fold_seed}
    else:
        crossval = args.crossval
    convention = CenterBiasConvention(args.centerbias, args.centerbias_bandwidth, args.centerbias_eps)
    dataset = open_dataset(args.data)
    device = resolve_device(args.device)
    model = load(args.model, revision=args.revision, map_location=device)
    features = None if args.features is None else _feature_cache(args, model, dataset, device)

    report = evaluate_model(
        model,
        dataset,
        crossval=crossval,
        metrics=metrics,
        gold_standard=not args.no_gold_standard,
        empirical_sigma=args.empirical_sigma,
        batch_size=args.batch_size,
        device=device,
        progress=show_progress(args),
        model_name=args.model,
        keep_log_densities=args.export_pysaliency is not None or args.export_mit is not None,
        centerbias=convention,
        features=features,
    )
    log_densities = report.log_densities
    written = [str(path) for path in write_report(report, args.out).values()]
    if args.export_pysaliency is not None:
        written.append(str(export_pysaliency_hdf5(args.export_pysaliency, dataset.image_names, log_densities)))
    if args.export_mit is not None:
        images = export_mit_submission(args.export_mit, dataset.image_names, (log_density.exp() for log_density in log_densities))
        written.append(f"{args.export_mit} ({len(images)} images)")
    print(report.to_markdown())
    print("\nwrote:")
    for path in written:
        print(f"  {path}")
    return 0


def _feature_cache(args: argparse.Namespace, model, dataset, device):
    """The feature cache ``--features`` names, holding every image of ``dataset`` (missing ones are
    computed first, in Lightning's predict loop on ``device``)."""
    from ..training.feature_cache import open_feature_cache

    cache = open_feature_cache(args.features, model.config)
    if cache.missing(dataset.image_ids):
        from ..training.feature_build import build_feature_cache  # imports Lightning

        if device.type == "cuda":
            placement = {"accelerator": "gpu", "devices": [device.index or 0]}
        else:
            placement = {"accelerator": device.type, "devices": 1}
        build_feature_cache(
            model, dataset, cache, batch_size=args.batch_size, trainer_overrides={**placement, "enable_progress_bar": show_progress(args)}
        )
    return cache
