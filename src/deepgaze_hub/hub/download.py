"""Finding a model's two files, in a local directory or in a Hugging Face Hub repo.

Only ``config.json`` and ``model.safetensors`` are ever fetched. Failures name the repo, the
revision and what to do: a missing revision, a repo that only offers pickle files (refused, never
unpickled), or offline mode without the files in the cache.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from ..model.serialization import CONFIG_FILE, PICKLE_SUFFIXES, WEIGHTS_FILE, WeightsError


def resolve_model_files(
    source: str,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> tuple[Path, Path]:
    """Return local paths of (config.json, model.safetensors) for a directory or a repo id."""
    path = Path(source).expanduser()
    if path.is_dir():
        return _local_files(path)
    if path.exists() or source.startswith((".", "/", "~")):
        raise WeightsError(f"{source} is not a model directory (it does not exist or is a file)")
    where = f"{source}@{revision or 'main'}"
    files = []
    for filename in (CONFIG_FILE, WEIGHTS_FILE):
        try:
            files.append(
                Path(
                    hf_hub_download(
                        source,
                        filename,
                        revision=revision,
                        cache_dir=cache_dir,
                        force_download=force_download,
                        local_files_only=local_files_only,
                        token=token,
                        library_name="deepgaze-hub",
                    )
                )
            )
        except HFValidationError as error:
            raise WeightsError(f"{source!r} is neither a model directory nor a valid Hub repo id ({error})") from None
        except RepositoryNotFoundError:
            raise WeightsError(
                f"{where}: no such model repo on {constants.ENDPOINT} (or it is private: log in with "
                "`hf auth login` or pass token=...)"
            ) from None
        except RevisionNotFoundError:
            raise WeightsError(f"{where}: the repo has no revision {revision!r} (branch, tag or commit)") from None
        except (LocalEntryNotFoundError, OfflineModeIsEnabled):
            offline = constants.HF_HUB_OFFLINE or local_files_only
            reason = "offline mode is on (HF_HUB_OFFLINE=1 or local_files_only)" if offline else "the Hub could not be reached"
            raise WeightsError(
                f"{where}: {filename} is not in the local cache ({cache_dir or constants.HF_HUB_CACHE}) and {reason}. "
                "Run the same call once with network access (HF_HUB_OFFLINE unset) to fill the cache, "
                "or pass a local directory made with save_pretrained."
            ) from None
        except EntryNotFoundError:
            raise WeightsError(_missing_file_message(source, revision, filename, token)) from None
        except HfHubHTTPError as error:
            raise WeightsError(f"{where}: the Hub could not serve {filename} ({error}); try again later") from None
    return files[0], files[1]


def _local_files(directory: Path) -> tuple[Path, Path]:
    config, weights = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    names = sorted(p.name for p in directory.iterdir())
    if not weights.is_file():
        raise WeightsError(_missing_weights_message(str(directory), names))
    if not config.is_file():
        raise WeightsError(f"{directory}: no {CONFIG_FILE}; is this a directory written by save_pretrained?")
    return config, weights


def _missing_file_message(repo_id: str, revision: str | None, filename: str, token) -> str:
    where = f"{repo_id}@{revision or 'main'}"
    try:
        names = HfApi(token=token).list_repo_files(repo_id, revision=revision)
    except Exception:  # the listing is only for a better message
        names = []
    if filename == WEIGHTS_FILE or (WEIGHTS_FILE not in names and any(n.endswith(PICKLE_SUFFIXES) for n in names)):
        return _missing_weights_message(where, names)
    return (
        f"{where}: the repo has no {filename} (files: {names[:20]}); it was not written by "
        "deepgaze-hub's save_pretrained/push_to_hub"
    )


def _missing_weights_message(where: str, names: list[str]) -> str:
    pickles = [name for name in names if name.endswith(PICKLE_SUFFIXES)]
    if pickles:
        return (
            f"{where}: no {WEIGHTS_FILE}, only pickle files {pickles}. deepgaze-hub never unpickles "
            "downloaded files (they can run arbitrary code); ask the publisher for safetensors, or "
            "convert a file you trust yourself with safetensors.torch.save_file."
        )
    return f"{where}: no {WEIGHTS_FILE} (files: {names[:20]}); save the model with save_pretrained"
