"""Building ensembles from members and members from ensembles, sharing one backbone.

Every trainable tensor of a `DeepGaze` has the member as its first axis (readout weights
(K, out, in), sigma (K,), centre-bias weight (K,)), so combining models is stacking along it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from .deepgaze import DeepGaze


def stack_members(models: Sequence[DeepGaze]) -> DeepGaze:
    """One ensemble whose members are all members of ``models``, in order.

    The models must share architecture and centre-bias template; the result uses the first
    model's backbone object (no second copy is built).
    """
    if not models:
        raise ValueError("stack_members needs at least one model")
    first = models[0]
    reference = dataclasses.replace(first.config, num_members=1)
    for other in models[1:]:
        if dataclasses.replace(other.config, num_members=1) != reference:
            raise ValueError("models differ in architecture; only members of one architecture can be stacked")
        if not torch.equal(other.centerbias.log_density, first.centerbias.log_density):
            raise ValueError("models have different centre-bias templates; install one template in all first")
    total = sum(m.num_members for m in models)
    ensemble = DeepGaze(dataclasses.replace(first.config, num_members=total), backbone=first.backbone)
    with torch.no_grad():
        for name, parameter in ensemble.named_parameters():
            parameter.copy_(torch.cat([dict(m.named_parameters())[name].detach() for m in models]))
        ensemble.centerbias.log_density.copy_(first.centerbias.log_density)
    return ensemble.to(first.device).train(first.training)


def select_members(model: DeepGaze, members: Sequence[int]) -> DeepGaze:
    """A model made of the chosen members only (e.g. one fold's member, or a sub-ensemble)."""
    index = torch.as_tensor(list(members), dtype=torch.long)
    if index.numel() == 0 or index.min() < 0 or index.max() >= model.num_members:
        raise ValueError(f"members must be in [0, {model.num_members}), got {list(members)}")
    subset = DeepGaze(dataclasses.replace(model.config, num_members=index.numel()), backbone=model.backbone)
    with torch.no_grad():
        for name, parameter in subset.named_parameters():
            parameter.copy_(dict(model.named_parameters())[name].detach()[index.to(parameter.device)])
        subset.centerbias.log_density.copy_(model.centerbias.log_density)
    return subset.to(model.device).train(model.training)


def repeat_member(model: DeepGaze, count: int) -> DeepGaze:
    """An ensemble of ``count`` copies of a single-member model (the start of k-fold fine-tuning)."""
    if model.num_members != 1:
        raise ValueError("repeat_member takes a single-member model")
    return stack_members([model] * count)
