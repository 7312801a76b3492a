"""Which genes become tokens: the regulon genes measured in the data, optionally widened by other genes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._names import positions


def regulon_edges_in(genes: Sequence[str], net: pd.DataFrame, min_targets: int = 1) -> pd.DataFrame:
    """Regulon edges whose TF and target are both among ``genes``.

    Matching is exact, then ignores case, surrounding whitespace and Ensembl version suffixes (``Pax5`` matches
    ``PAX5``). Self-edges (a TF regulating
    itself) are dropped, as self-loops are a separate mask parameter. TFs with fewer than
    ``min_targets`` targets among ``genes`` lose all their edges.

    Parameters
    ----------
    genes
        Gene names, e.g. ``adata.var_names`` or a gene panel.
    net
        Regulons from :func:`~sctransformer_tools.grn.load_regulons` (``weight`` defaults to 1).
    min_targets
        Minimum number of targets among ``genes`` for a TF to keep its edges.

    Returns
    -------
    Edges with columns ``source``, ``target`` (spelled as in ``genes``), ``weight`` and the
    positions ``source_idx``, ``target_idx`` into ``genes``.

    Examples
    --------
    >>> import pandas as pd
    >>> import sctransformer_tools as sct
    >>> net = pd.DataFrame({"source": ["PAX5", "PAX5", "SPI1"], "target": ["CD19", "MS4A1", "CD14"]})
    >>> sct.grn.regulon_edges_in(["CD19", "MS4A1", "Pax5"], net)[["source", "target"]].values.tolist()
    [['Pax5', 'CD19'], ['Pax5', 'MS4A1']]
    """
    genes = pd.Index(np.asarray(genes, dtype=str))
    if genes.has_duplicates:
        dup = genes[genes.duplicated()].unique()[:5].tolist()
        raise ValueError(f"Gene names must be unique; duplicated: {dup}. Run `adata.var_names_make_unique()`.")
    src = positions(genes, net["source"])
    tgt = positions(genes, net["target"])
    keep = (src >= 0) & (tgt >= 0) & (src != tgt)
    weight = net["weight"].to_numpy(dtype=float) if "weight" in net.columns else np.ones(len(net))
    edges = pd.DataFrame(
        {
            "source": genes[src[keep]],
            "target": genes[tgt[keep]],
            "weight": weight[keep],
            "source_idx": src[keep],
            "target_idx": tgt[keep],
        }
    )
    if "confidence" in net.columns:
        edges["confidence"] = net["confidence"].to_numpy()[keep]
    edges = edges.drop_duplicates(["source_idx", "target_idx"]).reset_index(drop=True)
    if min_targets > 1 and len(edges):
        if edges["source"].value_counts().max() < min_targets:  # decoupler asserts on an empty result
            return edges.iloc[:0]
        import decoupler as dc

        # TFs with fewer than min_targets targets lose their edges: decoupler's pp.prune (keeps the index)
        edges = edges.loc[dc.pp.prune(None, edges[["source", "target", "weight"]], tmin=min_targets).index]
    return edges.reset_index(drop=True)


@dataclass(frozen=True)
class GenePanel:
    """The genes a model reads, in the order of the data's genes.

    Attributes
    ----------
    genes
        Panel genes, in ``var`` order.
    var_index
        Position of each panel gene in the data's genes.
    is_tf
        Whether each panel gene is the source of at least one kept regulon edge.
    is_regulon_gene
        Whether each panel gene is a TF or target of a kept edge.
    edges
        Kept regulon edges among panel genes (see :func:`regulon_edges_in`), indices into ``genes``;
        ``source`` and ``target`` are spelled as the names the regulons were matched against.
    symbols
        The gene symbols the regulons were matched against, when they differ from ``genes`` (Ensembl IDs).
    """

    genes: pd.Index
    var_index: np.ndarray
    is_tf: np.ndarray
    is_regulon_gene: np.ndarray
    edges: pd.DataFrame = field(repr=False)
    symbols: pd.Index | None = None

    def __len__(self) -> int:
        return len(self.genes)

    def frame(self) -> pd.DataFrame:
        """One row per panel gene (index: the data's gene names): ``symbol``, ``is_tf``, ``is_regulon_gene``."""
        symbols = self.genes if self.symbols is None else self.symbols
        return pd.DataFrame(
            {"symbol": np.asarray(symbols, dtype=object), "is_tf": self.is_tf, "is_regulon_gene": self.is_regulon_gene},
            index=pd.Index(self.genes, name="gene"),
        )

    def summary(self) -> dict[str, int]:
        """Counts of genes, TFs, regulon genes, widening genes and edges."""
        return {
            "genes": len(self.genes),
            "tfs": int(self.is_tf.sum()),
            "regulon_genes": int(self.is_regulon_gene.sum()),
            "extra_genes": int((~self.is_regulon_gene).sum()),
            "regulon_edges": len(self.edges),
        }


def select_panel(
    var_names: Sequence[str],
    net: pd.DataFrame,
    *,
    symbols: Sequence[str] | None = None,
    extra_genes: Sequence[str] = (),
    min_targets: int = 1,
    max_genes: int | None = None,
) -> GenePanel:
    """Choose the gene panel: every regulon TF and target measured in the data, plus ``extra_genes``.

    TFs are rarely highly variable, so the panel is not restricted to highly variable genes: on pbmc3k
    with CollecTRI, all regulon genes give 3,869 genes and 18,812 edges, but requiring both ends of an
    edge to be highly variable leaves 343 genes and 638 edges. ``extra_genes`` (typically the highly
    variable genes) widen the panel; they have no edges but still reach the CLS token.

    Parameters
    ----------
    var_names
        The data's gene names.
    net
        Regulons from :func:`~sctransformer_tools.grn.load_regulons`.
    symbols
        Gene symbols to match the regulons against, one per gene of ``var_names`` (e.g. a ``var`` column
        when ``var_names`` are Ensembl IDs); ``var_names`` when ``None``.
    extra_genes
        Genes of ``var_names`` to add whether or not the regulons touch them (e.g. highly variable genes).
    min_targets
        TFs with fewer targets in the data lose their edges (:func:`decoupler.pp.prune`), and leave the
        panel unless they are targets or extra genes themselves.
    max_genes
        Refuse panels larger than this (a guard against unintended all-gene panels); ``None`` for no limit.

    Returns
    -------
    The :class:`GenePanel`.

    Examples
    --------
    >>> import pandas as pd
    >>> import sctransformer_tools as sct
    >>> net = pd.DataFrame({"source": ["PAX5", "PAX5", "SPI1"], "target": ["CD19", "MS4A1", "CD14"]})
    >>> panel = sct.grn.select_panel(["CD19", "ACTB", "PAX5", "MS4A1", "CD3E"], net, extra_genes=["CD3E"])
    >>> list(panel.genes), panel.summary()["regulon_edges"]
    (['CD19', 'PAX5', 'MS4A1', 'CD3E'], 2)
    """
    var_names = pd.Index(np.asarray(var_names, dtype=str))
    names = var_names if symbols is None else pd.Index(np.asarray(symbols, dtype=str))
    if len(names) != len(var_names):
        raise ValueError(f"symbols has {len(names)} entries for {len(var_names)} genes.")
    all_edges = regulon_edges_in(names, net, min_targets=min_targets)
    if len(all_edges) == 0:
        regulon_genes = pd.Index(pd.unique(np.concatenate([net["source"].to_numpy(), net["target"].to_numpy()])))
        n_hit = int((positions(names, regulon_genes) >= 0).sum())
        raise ValueError(
            f"No regulon edge has both its TF and its target among the data's {len(names):,} genes "
            f"({n_hit} of the regulons' {len(regulon_genes):,} genes matched; min_targets={min_targets}). "
            f"Data genes look like {list(names[:4])}, regulon genes like {list(regulon_genes[:4])}. "
            "If your var_names are Ensembl IDs, pass the var column that holds gene symbols "
            "(`gene_symbols=` in setup_anndata); check that the organism of the regulons matches the data."
        )
    in_panel = np.zeros(len(var_names), dtype=bool)
    in_panel[all_edges["source_idx"]] = True
    in_panel[all_edges["target_idx"]] = True
    regulon_mask = in_panel.copy()
    if len(extra_genes):
        extra = pd.Index(np.asarray(extra_genes, dtype=str))
        pos = var_names.get_indexer(extra)
        if (pos < 0).any():
            raise ValueError(f"extra_genes not in the data: {extra[pos < 0][:5].tolist()} ...")
        in_panel[pos] = True
    var_index = np.flatnonzero(in_panel)
    if max_genes is not None and len(var_index) > max_genes:
        raise ValueError(f"The panel has {len(var_index):,} genes, above max_genes={max_genes:,}.")
    genes = var_names[var_index]
    # re-index edges into panel positions
    panel_pos = np.full(len(var_names), -1)
    panel_pos[var_index] = np.arange(len(var_index))
    edges = all_edges.assign(
        source_idx=panel_pos[all_edges["source_idx"]], target_idx=panel_pos[all_edges["target_idx"]]
    )
    is_tf = np.zeros(len(genes), dtype=bool)
    is_tf[edges["source_idx"].to_numpy()] = True
    return GenePanel(
        genes=genes,
        var_index=var_index,
        is_tf=is_tf,
        is_regulon_gene=regulon_mask[var_index],
        edges=edges,
        symbols=None if symbols is None else names[var_index],
    )
