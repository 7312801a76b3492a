"""Self-training objectives: the class-balanced weights of pseudo-labels."""

from __future__ import annotations

import pytest
import torch

from sctransformer_tools.module import PseudoLabels
from sctransformer_tools.module._self_training import MAX_BALANCE_WEIGHT


def test_balanced_pseudo_labels_weigh_each_called_type_equally():
    """Weights are the inverse of a type's (bias-corrected running) share of the confident calls, over the types
    called: every called type carries the same total weight, the mean weight is 1, and unconfident cells add none."""
    objective = PseudoLabels(3, balance=True).train()
    target = torch.tensor([0, 0, 0, 1, 2])
    confident = torch.tensor([True, True, True, True, False])
    weights = objective._balance_weights(target, confident)
    share = objective.called_share / (1 - objective.momentum**objective.called_steps)
    assert torch.allclose(share, torch.tensor([0.75, 0.25, 0.0]))
    assert torch.allclose(weights[:4], torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    assert weights[confident].sum() / confident.sum() == pytest.approx(1.0)
    assert weights[target == 0][:3].sum() == pytest.approx(weights[3] * 1)  # type 0's total = type 1's total
    assert weights[4] == 0.0  # type 2 was never called confidently


def test_balance_weights_are_capped_and_unbalanced_is_the_default():
    objective = PseudoLabels(2, balance=True).train()
    target = torch.tensor([0] * 999 + [1])
    weights = objective._balance_weights(target, torch.ones(1000, dtype=torch.bool))
    assert weights.max() == MAX_BALANCE_WEIGHT
    assert not PseudoLabels(2).balance
    assert "called_share" not in PseudoLabels(2).state_dict()  # the running shares are not saved with a model
