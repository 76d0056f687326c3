"""Conventions of the ``deepgaze-hub`` command: fast help, help texts, --quiet, exit statuses, streams."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap

import pytest

from deepgaze_hub.cli import _common, build_parser, main
from deepgaze_hub.io.progress import progress_wanted

HEAVY = ("torch", "torchvision", "lightning", "huggingface_hub", "fastapi", "h5py", "scipy")


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the top parser and every subcommand parser, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_help_imports_neither_torch_nor_lightning():
    # A fresh interpreter: building every parser and formatting every help text loads nothing heavy.
    code = textwrap.dedent(
        f"""
        import argparse, json, sys
        from deepgaze_hub.cli import build_parser

        def walk(parser):
            parser.format_help()
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for sub in action.choices.values():
                        walk(sub)

        walk(build_parser())
        print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_every_option_argument_and_command_has_help():
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            name = "/".join(action.option_strings) or action.dest
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{' '.join(path)} {choice.dest}" for choice in action._choices_actions if not choice.help]
            elif not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path) or 'deepgaze-hub'}: {name}")
    assert missing == []


def test_every_command_takes_quiet_and_model_help_names_every_kind():
    parsers = list(_parsers(build_parser()))
    assert len(parsers) > 15
    for path, parser in parsers:
        assert "--quiet" in parser._option_string_actions, path
        model = parser._option_string_actions.get("--model")
        if model is not None:
            assert model.help == _common.MODEL_HELP, path
    for kind in ("registry name", "deepgaze-hub list", "hf-hub:OWNER/NAME@REVISION", "local model directory"):
        assert kind in _common.MODEL_HELP


def test_quiet_is_kept_at_any_level_and_defaults_to_false():
    parser = build_parser()
    assert parser.parse_args(["data", "info", "embedded"]).quiet is False
    assert parser.parse_args(["data", "info", "embedded", "--quiet"]).quiet is True
    assert parser.parse_args(["-q", "data", "info", "embedded"]).quiet is True
    assert parser.parse_args(["data", "-q", "info", "embedded"]).quiet is True


def test_light_copies_of_library_constants_are_equal():
    from deepgaze_hub.data import EMBEDDED
    from deepgaze_hub.data.fixations import OUTSIDE_POLICIES
    from deepgaze_hub.hub.official import KINDS
    from deepgaze_hub.hub.release import SOURCE_FILE
    from deepgaze_hub.io.images import DEFAULT_MAX_PIXELS
    from deepgaze_hub.model.backbone import PRECISIONS

    assert _common.DEFAULT_MAX_PIXELS == DEFAULT_MAX_PIXELS
    assert _common.PRECISIONS == PRECISIONS
    assert _common.EMBEDDED == EMBEDDED
    assert _common.OUTSIDE_POLICIES == OUTSIDE_POLICIES
    assert _common.RELEASE_KINDS == KINDS
    assert _common.SOURCE_FILE == SOURCE_FILE


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_only_on_a_terminal_and_never_when_quiet():
    assert progress_wanted(stream=_Terminal(True)) is True
    assert progress_wanted(quiet=True, stream=_Terminal(True)) is False
    assert progress_wanted(stream=_Terminal(False)) is False
    assert progress_wanted(stream=object()) is False  # no isatty: a file-like without a terminal


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["predict", "missing-image.png", "--model", "{tmp}/no-such-model", "--out", "{tmp}/out", "--device", "cpu"], "no-such"),
        (["evaluate", "--model", "{tmp}/no-such-model", "--data", "{tmp}/no-such.h5", "--out", "{tmp}/ev", "--device", "cpu"], "no-such"),
        (["data", "info", "{tmp}/no-such.h5"], "no-such.h5"),
    ],
)
def test_runtime_errors_exit_1_with_one_line_on_stderr(tmp_path, capsys, argv, needle):
    status = main([part.format(tmp=tmp_path) for part in argv])
    out, err = capsys.readouterr()
    assert status == 1
    assert out == ""
    errors = [line for line in err.splitlines() if ": error: " in line]  # predict also reports its progress
    assert len(errors) == 1 and errors[0].startswith(f"deepgaze-hub {argv[0]}: error: ") and needle in errors[0]
    assert err.endswith(errors[0] + "\n") and "Traceback" not in err


def test_usage_errors_exit_2(capsys):
    assert main(["predict", "x.png"]) == 2  # --model and --out missing
    assert main(["no-such-command"]) == 2
    assert main(["predict", "x.png", "--model", "m", "--out", "o", "--batch-size", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "usage:" in err


def test_results_on_stdout_and_no_progress_bar_off_a_terminal(tmp_path, capsys):
    # capsys's stderr is not a terminal: the import's bar (tqdm) must not be drawn
    status = main(["data", "synthetic", "--out", str(tmp_path / "d.h5"), "--images", "2", "--size", "32x40", "--observers", "2"])
    _, err = capsys.readouterr()
    assert status == 0
    assert "\r" not in err and "it/s" not in err and "image/s" not in err
    assert main(["data", "info", str(tmp_path / "d.h5"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["images"] == 2
