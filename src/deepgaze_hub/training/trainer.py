"""`make_trainer`: the one way a `lightning.Trainer` is built, from a recipe's `TrainerConfig`.

Training, the feature-cache build, the tests and the benchmarks all get their Trainer here, so the
settings every run of this package needs are stated once:

* ``use_distributed_sampler=False``: `SizeBucketBatchSampler` splits batches over ranks itself;
* ``num_sanity_val_steps=0``: validation only at the end of each epoch (best-epoch bookkeeping);
* ``enable_model_summary=False``;
* accelerator, devices, nodes, strategy, precision and determinism from the `TrainerConfig`.
"""

from __future__ import annotations

from typing import Any

import lightning as L

from .recipe import TrainerConfig


def trainer_settings(config: TrainerConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of `lightning.Trainer` for ``config``, with ``overrides`` applied last."""
    config = config or TrainerConfig()
    settings: dict[str, Any] = dict(
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        precision=config.precision,
        deterministic=config.deterministic,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    settings.update(overrides)
    return settings


def make_trainer(config: TrainerConfig | None = None, **overrides: Any) -> L.Trainer:
    """A `lightning.Trainer` for ``config`` (default `TrainerConfig()`); ``overrides`` are further
    Trainer arguments (``max_epochs``, ``logger``, ``callbacks``, ``enable_progress_bar``, ...)."""
    return L.Trainer(**trainer_settings(config, **overrides))
