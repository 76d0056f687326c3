"""The work of ``deepgaze-hub data`` (`deepgaze_hub.cli.data` holds its options), imported only when
a data command runs so that ``--help`` does not load numpy, h5py or torch."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..baselines import fit_centerbias, fit_gold_standard
from ..data import (
    CsvColumns,
    FixationDataset,
    embedded_dataset_path,
    export_csv,
    export_pysaliency,
    import_csv,
    import_mit1003,
    import_pysaliency,
    import_salicon,
    kfold_assignments,
    kfold_split,
    open_dataset,
)
from ..data.fixations import duplicate_mask
from ..data.synthetic import make_synthetic_dataset
from ..errors import DatasetError
from ..io.atomic import atomic_open, atomic_save_npy
from ._common import show_progress

def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise DatasetError(f"{path} is a folder; --out takes the dataset file to write, e.g. {path / 'dataset.h5'}")
    if path.exists() and not overwrite:
        raise DatasetError(f"{path} exists; pass --overwrite to replace it")


def run_import(args: argparse.Namespace) -> int:
    _refuse_existing(args.out, args.overwrite)
    common = {"name": args.name, "progress": show_progress(args)}
    if args.format == "pysaliency":
        dataset = import_pysaliency(args.stimuli, args.fixations, args.out, outside=args.outside, time_unit=args.time_unit, **common)
    elif args.format == "salicon":
        dataset = import_salicon(
            args.root, args.out, split=args.split, fixation_type=args.fixation_type, images=args.images,
            fixations=args.fixation_dir, outside=args.outside, **common,
        )
    elif args.format == "csv":
        dataset = import_csv(
            args.table, args.images, args.out, columns=CsvColumns.from_pairs(args.column), one_based=args.one_based,
            outside=args.outside, time_unit=args.time_unit, allow_outside_images=args.allow_outside_images,
            drop_duplicates=args.drop_duplicates, **common,
        )
    else:
        dataset = import_mit1003(args.root, args.out, include_initial_fixation=args.include_initial_fixation, extracted=args.extracted, **common)
    meta = dataset.metadata
    print(
        f"wrote {dataset.path}: {len(dataset)} images, {len(dataset.fixations)} fixations, {dataset.num_observers} observers; "
        f"{meta.get('outside_count', 0)} outside their image ({meta.get('outside_policy')})",
        file=sys.stderr,
    )
    if meta.get("duplicate_count"):
        print(f"{meta['duplicate_count']} rows repeat an earlier row exactly ({meta.get('duplicates', 'kept')})", file=sys.stderr)
    if meta.get("ignored"):
        print(f"not imported (no place in the format): {', '.join(meta['ignored'])}", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    dataset = open_dataset(args.dataset)
    if args.format == "pysaliency":
        kind = export_pysaliency(dataset, args.stimuli, args.fixations)
        print(f"wrote {args.stimuli} (FileStimuli) and {args.fixations} ({kind})", file=sys.stderr)
    else:
        path = export_csv(dataset, args.out)
        print(f"wrote {path} and {len(dataset)} images under {args.out / 'images'}", file=sys.stderr)
    return 0


def run_synthetic(args: argparse.Namespace) -> int:
    _refuse_existing(args.out, args.overwrite)
    dataset = make_synthetic_dataset(
        args.out, args.images, size=args.size, num_observers=args.observers,
        fixations_per_observer=args.fixations, seed=args.seed, progress=show_progress(args),
    )
    print(f"wrote {dataset.path}: {len(dataset)} images, {len(dataset.fixations)} fixations", file=sys.stderr)
    return 0


def run_default(args: argparse.Namespace) -> int:
    print(embedded_dataset_path(args.cache_dir))
    return 0


def run_info(args: argparse.Namespace) -> int:
    summary = summarise(open_dataset(args.dataset))
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    else:
        for key, value in summary.items():
            print(f"{key:>22}: {value if not isinstance(value, dict) else json.dumps(value, sort_keys=True)}")
    return 0


def summarise(dataset: FixationDataset) -> dict:
    """A JSON-serialisable summary of a dataset (what ``data info`` prints)."""
    fix = dataset.fixations
    counts = dataset.fixation_counts
    sizes = Counter(f"{h}x{w}" for h, w in dataset.image_sizes.tolist())
    per_observer = np.unique(np.stack([fix.image, fix.observer]), axis=1).shape[1] if len(fix) else 0
    return {
        "path": str(dataset.path),
        "name": dataset.metadata.get("name", ""),
        "images": len(dataset),
        "distinct image ids": len(set(dataset.image_ids)),
        "image sizes (HxW)": dict(sizes.most_common(5)) | ({"...": len(sizes) - 5} if len(sizes) > 5 else {}),
        "fixations": len(fix),
        "fixations per image": f"min {counts.min()}, mean {counts.mean():.1f}, max {counts.max()}" if len(counts) else "-",
        "observers": dataset.num_observers if len(fix) else 0,
        "observers per image": round(per_observer / max(len(dataset), 1), 2),
        "duplicate fixations": int(duplicate_mask(fix).sum()),
        "scanpaths": len(np.unique(fix.scanpath[fix.scanpath >= 0])),
        "with time": int((~np.isnan(fix.t)).sum()),
        "with duration": int((~np.isnan(fix.duration)).sum()),
        "extra fields": sorted(fix.extra),
        "true densities": dataset.has_truth,
        "metadata": dataset.metadata,
    }


def run_folds(args: argparse.Namespace) -> int:
    dataset = open_dataset(args.dataset)
    folds = kfold_assignments(dataset, k=args.k, seed=args.seed)
    fixation_folds = folds[dataset.fixations.image]
    for fold in range(args.k):
        print(f"fold {fold}: {(folds == fold).sum()} images, {(fixation_folds == fold).sum()} fixations")
    if args.out:
        with atomic_open(args.out, "w") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["image", "id", "fold"])
            writer.writerows(zip(dataset.image_names, dataset.image_ids, folds.tolist()))
    return 0


def run_baselines(args: argparse.Namespace) -> int:
    dataset = open_dataset(args.dataset)
    images = None
    if args.fold is not None:
        images, _ = kfold_split(dataset, args.fold, k=args.k)
    bits = 1 / math.log(2)
    centerbias = fit_centerbias(dataset, images, device=args.device)
    print(
        f"centre bias: bandwidth {centerbias.bandwidth:.4g} (log10 {math.log10(centerbias.bandwidth):.3f}), uniform weight "
        f"{centerbias.uniform_weight:.3g}; {centerbias.cv} log-likelihood {centerbias.cv_log_likelihood * bits:.4f} bits/fixation"
    )
    if args.out:
        centerbias.save(args.out)
    if args.template:
        atomic_save_npy(args.template, centerbias.template(args.shape).numpy())
    if args.gold:
        gold = fit_gold_standard(dataset, centerbias, images, device=args.device)
        print(
            f"gold standard: bandwidth {gold.bandwidth:.4g}, centre-bias weight {gold.centerbias_weight:.3g}; "
            f"leave-one-observer-out log-likelihood {gold.cv_log_likelihood * bits:.4f} bits/fixation"
        )
    return 0
