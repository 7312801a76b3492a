"""The expression profile (module/_profile.py): a fixed projection of the cell's whole profile."""

from __future__ import annotations

import numpy as np
import torch

from sctransformer_tools.module import ExpressionProfile
from sctransformer_tools.module._profile import fit_profile


def test_genes_the_data_do_not_measure_read_as_the_fitted_mean():
    """A dataset lacking some profile genes is projected as if those genes sat at the mean of the fitted cells
    (not at 0 counts, which would move every one of its cells along the components)."""
    rng = np.random.default_rng(0)
    expression = np.log1p(rng.poisson(rng.gamma(2.0, 1.0, size=(200, 12)), size=(200, 12))).astype(np.float32)
    profile = ExpressionProfile(torch.arange(10), n_components=3, d_model=4)
    fit = fit_profile(expression[:, :10], 3)
    profile.set_projection(fit["center"], fit["scale"], fit["components"])
    x = torch.as_tensor(expression)
    measured = torch.ones(12, dtype=torch.bool)
    measured[[1, 4, 7]] = False
    zero_filled = x.clone()
    zero_filled[:, [1, 4, 7]] = 0.0  # what a dataset without these genes gives
    at_mean = x.clone()
    at_mean[:, [1, 4, 7]] = profile.center[[1, 4, 7]]
    torch.testing.assert_close(profile.coordinates(zero_filled, measured), profile.coordinates(at_mean))
    assert not torch.allclose(profile.coordinates(zero_filled), profile.coordinates(at_mean))
    # every gene measured: the mask changes nothing
    torch.testing.assert_close(profile.coordinates(x, torch.ones(12, dtype=torch.bool)), profile.coordinates(x))
