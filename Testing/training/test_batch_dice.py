"""Training uses the plan's ``batch_dice`` (METHOD §2 and §4)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_train import _train, make_work

from NNSegLib.training import loss as loss_module


@pytest.mark.parametrize("batch_dice", [True, False])
def test_training_loss_follows_the_plans_batch_dice(tmp_path, monkeypatch, batch_dice):
    ws, plans = make_work(tmp_path)
    cfg = dataclasses.replace(plans.configuration("3d_fullres"), batch_dice=batch_dice)
    dataclasses.replace(plans, configurations={"3d_fullres": cfg}).save(ws.plans)
    built, seen = [], []

    class Spy(loss_module.DeepSupervisionLoss):
        """The real loss; records how it was built and what it computed."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

        def forward(self, outputs, target):
            value = super().forward(outputs, target)
            first = outputs[0] if isinstance(outputs, (list, tuple)) else outputs
            seen.append((first.detach().float(), target.detach(), float(value.detach())))
            return value

    monkeypatch.setattr(loss_module, "DeepSupervisionLoss", Spy)
    _train(ws, overrides={"max_epochs": 1, "iterations_per_epoch": 1, "val_iterations": 1,
                          "deep_supervision": False})
    assert len(built) == 1 and built[0].loss.batch_dice is batch_dice
    logits, target, value = seen[0]
    # the value is Dice + CE with the plan's Dice kind, not the other one
    same = loss_module.DiceCELoss(3, batch_dice)(logits, target)
    other = loss_module.DiceCELoss(3, not batch_dice)(logits, target)
    assert value == pytest.approx(float(same), rel=1e-4)
    assert abs(float(same) - float(other)) > 1e-4
    assert torch.isfinite(torch.tensor(value)).item()
