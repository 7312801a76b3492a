"""Model folders as the released versions wrote them, for the migration tests (re-runnable with that release).

Run from a checkout of the 0.2.0 release (``git worktree add ../v020 bff19f3``), with that checkout's package
importable::

    PYTHONPATH=../v020/src python tests/data/released_models/make_released_models.py

It trains a tiny model on scanpy's bundled pbmc68k_reduced (offline regulon fixture, seeded), saves it the way
0.2.0 did (``format1/``: model.json + arrays.npz + weights.pt) and the way 0.1 did (``format0/``: scvi-tools'
pickled model.pt), pretrains a second tiny model (``format1_pretrained/``), and writes the predictions and
latent coordinates that release computed (``expected.npz``): a migrated folder must reproduce them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    import torch
    from scvi.model.base import BaseModelClass

    import sctransformer_tools as sct

    torch.set_num_threads(1)
    adata = sct.ds.pbmc68k_reduced()
    sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
    model = sct.SCTransformer(adata, d_model=16, n_layers=1, n_heads=2, n_top_genes=0, seed=0)
    model.train(max_epochs=3, enable_progress_bar=False, seed=0)
    model.save(HERE / "format1", overwrite=True)
    BaseModelClass.save(model, str(HERE / "format0"), overwrite=True)  # 0.1's pickled model.pt
    query = adata[::7].copy()
    probs = model.predict(query, soft=True)
    latent = model.get_latent_representation(query, inplace=False)
    backbone = sct.SCTransformer(adata, d_model=16, n_layers=1, n_heads=2, n_top_genes=0, seed=0)
    backbone.pretrain(masking="mam", max_epochs=1, enable_progress_bar=False, seed=0)
    backbone.save(HERE / "format1_pretrained", overwrite=True)
    np.savez(
        HERE / "expected.npz",
        obs_names=np.asarray(query.obs_names, dtype=str),
        probabilities=probs.to_numpy(),
        cell_types=np.asarray(probs.columns, dtype=str),
        latent=latent,
    )
    print(sct.__version__, sorted(p.name for p in HERE.rglob("*") if p.is_file()))


if __name__ == "__main__":
    # the offline regulon fixture, set only when run as a script: pytest imports this file to collect doctests,
    # and a module-level assignment would point every later test of the session at the fixture
    os.environ["SCTRANSFORMER_TOOLS_DATA"] = str(HERE.parent / "regulons")
    main()
