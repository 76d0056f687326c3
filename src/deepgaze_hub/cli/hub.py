"""``deepgaze-hub push`` and ``deepgaze-hub list``: publish a saved model, list the named models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import SOURCE_FILE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "push",
        help="upload a saved model to the Hugging Face Hub",
        description=(
            "Load MODEL_DIR (written by save_pretrained or `deepgaze-hub train`) strictly, upload "
            "config.json, model.safetensors and a regenerated model card to REPO_ID in one commit "
            "(the repo is created if needed), and print the registry pin: the commit hash and the "
            "sha256 of the files, to paste into hub_configs/<name>.yaml. Needs a token with write "
            "access (`hf auth login` or HF_TOKEN)."
        ),
    )
    parser.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="the model directory to upload (written by save_pretrained, `train` or `convert`)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="owner/name on the Hub")
    parser.add_argument("--revision-tag", default=None, help="also tag the new commit (e.g. v1.0)")
    parser.add_argument("--branch", default=None, help="push to this branch instead of main")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--message", default=None, help="commit message")
    parser.set_defaults(func=run_push)

    parser = subparsers.add_parser(
        "list",
        help="list the named models of the registry",
        description=(
            "List the models of the registry (hub_configs/): name, status, backbone, members, Hub repo. "
            "Load one by name: `--model NAME` on the command line, deepgaze_hub.load(NAME) in Python, "
            'or torch.hub.load("deepgaze-hub/deepgaze-hub", NAME with _ for -).'
        ),
    )
    parser.add_argument("--published", action="store_true", help="only models whose weights are published")
    parser.set_defaults(func=run_list)


def run_push(args: argparse.Namespace) -> int:
    from ..hub.publish import push  # torch and huggingface_hub: only when the command runs

    if (args.model_dir / SOURCE_FILE).is_file() and not args.private:
        print(
            f"deepgaze-hub push: note: {args.model_dir} is converted from the DeepGaze authors' release "
            "files, which carry no licence; do not re-host them publicly: consider --private",
            file=sys.stderr,
        )
    publication = push(
        args.model_dir,
        args.repo_id,
        revision_tag=args.revision_tag,
        private=args.private or None,
        branch=args.branch,
        commit_message=args.message,
    )
    tag = f" (tag {publication.tag})" if publication.tag else ""
    print(f"pushed {args.model_dir} to {publication.commit_url}{tag}", file=sys.stderr)
    print("# registry pin for hub_configs/<name>.yaml:", file=sys.stderr)
    print(publication.registry_pin(), end="")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..hub.registry import Registry  # torch: only when the command runs

    rows = [("name", "status", "backbone", "members", "source", "title")]
    for entry in Registry().entries():
        if args.published and not entry.published:
            continue
        if entry.release is not None:  # the architecture is the converter's
            backbone, members, source = f"({entry.release.converter})", "-", entry.release.url
        else:
            config = entry.config()
            backbone, members, source = config.backbone.name, str(config.num_members), entry.hub.repo_id
        rows.append((entry.name, entry.status, backbone, members, source, entry.title))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0
