"""`DeepGazeModule`: the LightningModule that trains a DeepGaze readout (or K of them at once).

Objective (docs/design.md): the log-likelihood of the observed fixations in **bits per fixation
relative to a uniform density**, ``(mean_f log p(y_f, x_f) + log(H W)) / ln 2`` per image,
averaged over images (``averaging="image"``, the reference) or over all fixations
(``"fixation"``). The loss is its negative, plus ``l1 * sum |readout weights|`` if configured.

K members train side by side: a (B, K) mask says which members learn from which image, so member
k of a cross-validated ensemble never sees its validation fold. Each member's loss is its own
average, so the members' gradients are independent (Adam is elementwise, so each member's
optimiser state is its own too). Averages use the global count over all devices, which makes
N-process DDP compute the same gradient as one process.

Only the readout, the blur sigmas and the centre-bias weights are parameters: the backbone is no
parameter of `DeepGaze` at all, so it is neither optimised nor written into checkpoints.
After every validation epoch each member whose validation log-likelihood improved has its
parameters copied into ``best__*`` buffers (saved with checkpoints); `best_model` returns the
model made of each member's best epoch.

Validation sums are a torchmetrics `Metric` (summed over devices by torchmetrics). The module
saves its hyperparameters as plain data (the model config, the optimiser settings, the averaging),
so ``DeepGazeModule.load_from_checkpoint(path)`` rebuilds it from a checkpoint alone.
"""

from __future__ import annotations

import math

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import Metric

from ..errors import ConfigError
from ..io.typed import parse, to_dict
from ..model.config import DeepGazeConfig
from ..model.deepgaze import DeepGaze
from .batch import TrainingBatch
from .recipe import AVERAGING, OptimizerConfig

LN2 = math.log(2.0)


#: Rows of `ValidationSums`, each (K,) per member.
VALIDATION_SUMS = ("ll", "centerbias_ll", "weight", "nss", "auc", "images")


def _buffer_name(parameter: str) -> str:
    return "best__" + parameter.replace(".", "__")


class ValidationSums(Metric):
    """Per-member sums over a validation epoch, (len(VALIDATION_SUMS), K), summed over devices."""

    full_state_update = False

    def __init__(self, num_members: int) -> None:
        super().__init__()
        self.add_state("sums", default=torch.zeros(len(VALIDATION_SUMS), num_members), dist_reduce_fx="sum")

    def update(self, sums: torch.Tensor) -> None:
        self.sums += sums

    def compute(self) -> dict[str, torch.Tensor]:
        return dict(zip(VALIDATION_SUMS, self.sums))


class DeepGazeModule(L.LightningModule):
    """Train ``model``'s readouts with Adam + step decay on batches from `FixationDataModule`.

    Logged (bits per fixation): ``train/ll``, ``val/ll`` (mean over members), ``val/ig``
    (information gain over the model's centre bias), per member ``val/ll_m{k}``; and ``val/nss``,
    ``val/auc`` of the members' densities (see `nss_and_auc`).
    """

    def __init__(
        self,
        model: DeepGaze | Mapping[str, Any],
        optimizer: OptimizerConfig | Mapping[str, Any] | None = None,
        averaging: str = "image",
    ) -> None:
        """``model``: a `DeepGaze`, or its config as plain data (what a checkpoint stores);
        ``optimizer``: an `OptimizerConfig` or its fields as plain data."""
        super().__init__()
        if averaging not in AVERAGING:
            raise ConfigError(f"averaging must be one of {AVERAGING}, got {averaging!r}")
        if isinstance(model, Mapping):
            model = DeepGaze(DeepGazeConfig.from_dict(dict(model)))
        if not isinstance(optimizer, OptimizerConfig):
            optimizer = parse(OptimizerConfig, dict(optimizer or {}), "DeepGazeModule optimizer")
        self.model = model
        self.optimizer_config = optimizer
        self.averaging = averaging
        self.save_hyperparameters({"model": model.config.to_dict(), "optimizer": to_dict(optimizer), "averaging": averaging})
        k = model.num_members
        self.register_buffer("best_ll", torch.full((k,), -math.inf))
        self.register_buffer("best_epoch", torch.full((k,), -1, dtype=torch.long))
        for name, parameter in self._trainable():
            self.register_buffer(_buffer_name(name), parameter.detach().clone())
        self.val_sums = ValidationSums(k)

    def _trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]

    # -- the objective --------------------------------------------------------------------------
    def _grid(self, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if batch.features is not None:
            features = batch.features.float()
        else:
            features = self.model.extract_features(batch.images)
        return self.model.grid_log_densities(features, batch.size)

    def member_bits(self, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image and member: log-likelihood in bits/fixation vs uniform (B, K), fixation
        counts (B,), and the centre bias's log-likelihood in bits/fixation (B,)."""
        return self._bits(batch, *self._grid(batch))

    def _bits(self, batch: TrainingBatch, z: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        height, width = batch.size
        pixel_rows = batch.fix_y.long().clamp(0, height - 1)
        pixel_cols = batch.fix_x.long().clamp(0, width - 1)
        log_p = z[batch.fix_batch, :, rows[pixel_rows], cols[pixel_cols]]  # (F, K) nats
        one_hot = F.one_hot(batch.fix_batch, z.shape[0]).to(log_p.dtype).T  # (B, F): deterministic sums
        counts = one_hot.sum(dim=1)
        per_image = one_hot @ log_p / counts.clamp_min(1).unsqueeze(1)  # (B, K) mean log p in nats
        log_uniform = -math.log(height * width)
        bits = (per_image - log_uniform) / LN2
        bias = self.model.centerbias((height, width)).to(log_p.device)
        bias_bits = (one_hot @ bias[pixel_rows, pixel_cols] / counts.clamp_min(1) - log_uniform) / LN2
        return bits, counts, bias_bits

    def nss_and_auc(self, batch: TrainingBatch, z: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor):
        """Per image and member, NSS and AUC of the member's density (B, K) each (monitoring only).

        Both read the density p over all H x W pixels, where a grid cell counts as the pixels it
        stands for. NSS: mean over fixations of (p - mean p) / std p (population std). AUC: mean
        over fixations of the fraction of pixels with lower density, ties counted one half (the
        benchmark ranks ties by pixel index instead; `deepgaze_hub.evaluation` does that).
        """
        height, width = batch.size
        cell = (torch.bincount(rows, minlength=z.shape[2]).unsqueeze(1) * torch.bincount(cols, minlength=z.shape[3])).to(z.dtype)
        total = cell.sum()
        p = z.detach().exp()
        mean = (p * cell).sum(dim=(2, 3)) / total
        std = (((p - mean[..., None, None]) ** 2 * cell).sum(dim=(2, 3)) / total).sqrt().clamp_min(1e-30)
        pixel_rows = rows[batch.fix_y.long().clamp(0, height - 1)]
        pixel_cols = cols[batch.fix_x.long().clamp(0, width - 1)]
        values = p[batch.fix_batch, :, pixel_rows, pixel_cols]  # (F, K)
        one_hot = F.one_hot(batch.fix_batch, z.shape[0]).to(z.dtype).T
        counts = one_hot.sum(dim=1).clamp_min(1).unsqueeze(1)
        nss = one_hot @ ((values - mean[batch.fix_batch]) / std[batch.fix_batch]) / counts
        flat = p.flatten(2)  # (B, K, G)
        ordered, order = flat.sort(dim=2)
        below = F.pad(cell.flatten()[order].cumsum(dim=2), (1, 0))  # pixels below each rank
        auc = torch.zeros_like(nss)
        for b in range(z.shape[0]):
            mine = values[batch.fix_batch == b].T.contiguous()  # (K, F_b)
            if mine.numel():
                lower = below[b].gather(1, torch.searchsorted(ordered[b], mine, right=False))
                upper = below[b].gather(1, torch.searchsorted(ordered[b], mine, right=True))
                auc[b] = ((lower + upper) / 2 / total).mean(dim=1)
        return nss, auc

    def _weights(self, batch: TrainingBatch, counts: torch.Tensor) -> torch.Tensor:
        mask = batch.mask.to(counts.dtype) * (counts > 0).to(counts.dtype).unsqueeze(1)
        return mask if self.averaging == "image" else mask * counts.unsqueeze(1)

    def _global_sum(self, value: torch.Tensor) -> torch.Tensor:
        """``value`` summed over all devices (in the step, so that the loss uses global counts)."""
        if self.trainer is not None and self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(value.detach().clone(), reduce_op="sum")
        return value.detach()

    def training_step(self, batch: TrainingBatch, batch_idx: int) -> torch.Tensor:
        bits, counts, _ = self.member_bits(batch)
        weights = self._weights(batch, counts)
        total = self._global_sum(weights.sum(dim=0)).clamp_min(1e-12)  # (K,) over all devices
        world = self.trainer.world_size if self.trainer is not None else 1
        member_ll = (bits * weights).sum(dim=0) / total * world  # DDP's gradient mean undoes `world`
        loss = -member_ll.sum()
        if self.optimizer_config.l1:
            loss = loss + self.optimizer_config.l1 * sum(layer.weight.abs().sum() for layer in self.model.readout.layers)
        self.log("train/ll", member_ll.detach().mean() / world, prog_bar=True, batch_size=len(counts))
        return loss

    # -- validation and per-member best epochs ----------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self.val_sums.reset()

    def validation_step(self, batch: TrainingBatch, batch_idx: int) -> None:
        grid = self._grid(batch)
        bits, counts, bias_bits = self._bits(batch, *grid)
        nss, auc = self.nss_and_auc(batch, *grid)
        weights = self._weights(batch, counts)
        images = batch.mask.to(weights.dtype) * (counts > 0).to(weights.dtype).unsqueeze(1)
        sums = [bits * weights, bias_bits.unsqueeze(1) * weights, weights, nss * images, auc * images, images]
        self.val_sums.update(torch.stack([values.sum(0) for values in sums]).detach())

    def on_validation_epoch_end(self) -> None:
        if self.val_sums.update_count == 0 or self.trainer.sanity_checking:
            return
        # summed over devices, so every rank logs the same values; (K,) each (torchmetrics squeezes K = 1)
        sums = {name: values.reshape(-1) for name, values in self.val_sums.compute().items()}
        weight, images = sums["weight"].clamp_min(1e-12), sums["images"].clamp_min(1e-12)
        ll, bias_ll = sums["ll"] / weight, sums["centerbias_ll"] / weight
        self.log("val/ll", ll.mean(), prog_bar=True, sync_dist=True)
        self.log("val/ig", (ll - bias_ll).mean(), prog_bar=True, sync_dist=True)
        self.log("val/nss", (sums["nss"] / images).mean(), sync_dist=True)
        self.log("val/auc", (sums["auc"] / images).mean(), sync_dist=True)
        for k in range(ll.numel()):
            self.log(f"val/ll_m{k}", ll[k], sync_dist=True)
        improved = ll > self.best_ll
        if improved.any():
            self.best_ll[improved] = ll[improved]
            self.best_epoch[improved] = self.current_epoch
            with torch.no_grad():
                for name, parameter in self._trainable():
                    getattr(self, _buffer_name(name))[improved] = parameter.detach()[improved]

    def best_model(self) -> DeepGaze:
        """A copy of the model holding, per member, the parameters of its best validation epoch
        (the current ones for members never validated)."""
        best = DeepGaze(self.model.config, backbone=self.model.backbone)  # shares the frozen backbone
        best.load_state_dict(self.model.state_dict())
        with torch.no_grad():
            validated = self.best_epoch >= 0
            for name, parameter in best.named_parameters():
                if parameter.requires_grad:
                    parameter[validated] = getattr(self, _buffer_name(name))[validated].to(parameter.device)
        return best.to(self.model.device).eval()

    # -- optimisation -----------------------------------------------------------------------------
    def configure_optimizers(self):
        cfg = self.optimizer_config
        optimizer = torch.optim.Adam([p for _, p in self._trainable()], lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
