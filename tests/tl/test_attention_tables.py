"""Attention results in ``uns`` (tl/_utils.py): group names are data, never keys."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata as ad
import pandas as pd

import sctransformer_tools as sct


def test_results_with_any_group_name_write_to_h5ad(pbmc68k, tmp_path):
    """Issue 23.5: group names are data, never keys: a name with "/" (Allen's "L2/3 IT") writes without a warning."""
    import warnings

    pbmc68k.obs["group"] = pbmc68k.obs["bulk_labels"].astype(str).str.replace(" ", "/")
    sct.SCTransformer.setup_anndata(pbmc68k, labels_key="bulk_labels")
    model = sct.SCTransformer(pbmc68k, d_model=16, n_layers=1, n_heads=2, n_top_genes=0)
    model.train(max_epochs=1, enable_progress_bar=False)
    model.get_attention(pbmc68k, groupby="group", batch_size=256)
    assert any("/" in g for g in sct.tl.attention_tables(pbmc68k)["scores"].columns)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        pbmc68k.write_h5ad(tmp_path / "attention.h5ad")
    back = ad.read_h5ad(tmp_path / "attention.h5ad")
    pd.testing.assert_frame_equal(
        sct.tl.attention_tables(back)["tf_scores"], sct.tl.attention_tables(pbmc68k)["tf_scores"], check_dtype=False
    )
