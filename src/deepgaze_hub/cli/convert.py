"""``deepgaze-hub convert official KIND FILE --out DIR``: the authors' release file as a model directory."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import RELEASE_KINDS as KINDS
from ._common import SOURCE_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a DeepGaze release file of the authors into a model directory",
        description="Convert weights published elsewhere into a model directory of this package.",
    )
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True)
    official = sources.add_parser(
        "official",
        help="the DeepGaze authors' release files (deepgaze1.pth, deepgaze2e.pth)",
        description=(
            "Read FILE (the authors' deepgaze1.pth or deepgaze2e.pth from github.com/matthias-k/DeepGaze "
            "releases) with torch.load(weights_only=True) (never a full unpickle), check every key and "
            "shape against the published layout of KIND, and write a model directory: config.json, "
            f"model.safetensors, a model card (provenance, citation, licence situation) and {SOURCE_FILE}. "
            "Load it with `--model DIR` or deepgaze_hub.load(DIR). The authors give no licence for these "
            "weights: use them for research at your discretion and do not re-host them. "
            "`deepgaze_hub.load('deepgaze2e')` does all this by itself (download, convert, cache)."
        ),
    )
    official.add_argument("kind", choices=KINDS, metavar="KIND", help=f"the published layout: {', '.join(KINDS)}")
    official.add_argument("file", type=Path, metavar="FILE", help="the .pth release file")
    official.add_argument("--out", type=Path, required=True, metavar="DIR", help="the model directory to write")
    official.add_argument(
        "--centerbias",
        type=Path,
        default=None,
        metavar="NPY",
        help="the authors' centerbias_mit1003.npy ((1024, 1024) float64 log density); default: the converter's",
    )
    official.add_argument("--overwrite", action="store_true", help="replace DIR if it exists and is not empty")
    official.set_defaults(func=run_official)


def run_official(args: argparse.Namespace) -> int:
    from ..hub.registry import Registry  # torch: only when the command runs
    from ..hub.release import check_output_directory, convert_release, write_model_directory

    check_output_directory(args.out, overwrite=args.overwrite)  # before the long read
    registry = Registry()
    card = registry.get(args.kind).card_info() if registry.canonical(args.kind) else None
    model, provenance = convert_release(args.kind, args.file, centerbias=args.centerbias, card=card)
    out = write_model_directory(model, args.out, provenance, overwrite=args.overwrite)
    print(f"converted {args.file} (sha256 {provenance['sha256']}) into {out}:", file=sys.stderr)
    for path in sorted(out.iterdir()):
        print(f"  {path.name}  {path.stat().st_size} bytes", file=sys.stderr)
    print(f"load it with `--model {out}` or deepgaze_hub.load({str(out)!r})", file=sys.stderr)
    print(provenance["sha256"])
    return 0
