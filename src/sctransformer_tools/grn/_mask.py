"""The attention mask over gene tokens: the GRN prior and its controls of equal density."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from sctransformer_tools._constants import MASK_KINDS

MaskKind = Literal["grn", "dense", "random", "shuffled"]
Direction = Literal["tf_to_target", "both"]
DIRECTIONS: tuple[str, ...] = ("tf_to_target", "both")


@dataclass(frozen=True)
class GRNMask:
    """Which gene token may attend to which.

    Pairs are ``(query, key)`` positions in the gene panel: the query token's update reads from the
    key token. With ``direction="tf_to_target"`` a target's query attends to its TFs, so information
    flows TF -> target. Self-loops and the CLS token are handled by the flags, not stored as pairs.

    Attributes
    ----------
    kind
        ``"grn"`` (the regulons), ``"dense"`` (every pair), ``"random"`` (uniform random pairs, as many
        as the GRN mask) or ``"shuffled"`` (the regulons with targets permuted, degree-preserving).
    n_genes
        Number of gene tokens (the panel size).
    pairs
        ``(n_pairs, 2)`` int array of allowed ``(query, key)`` pairs between distinct genes, sorted and
        unique; ``None`` for ``"dense"``.
    pair_weight
        Regulon weight (sign) of each pair, 1.0 for random pairs; ``None`` for ``"dense"``.
    direction
        ``"tf_to_target"`` or ``"both"``.
    self_loops
        Whether every gene token attends to itself (on by default: no empty rows).
    genes_attend_cls
        Whether gene tokens may attend to the CLS token. The CLS token always attends to every gene.
    n_tfs
        Number of TFs with at least one kept edge in the prior this mask derives from.
    reference_pairs
        Number of pairs of the GRN mask of the same panel (what controls are matched to).
    seed
        Seed of the random and shuffled controls.
    """

    kind: str
    n_genes: int
    pairs: np.ndarray | None
    pair_weight: np.ndarray | None
    direction: str
    self_loops: bool
    genes_attend_cls: bool
    n_tfs: int
    reference_pairs: int
    seed: int | None = None

    @property
    def n_pairs(self) -> int:
        """Allowed pairs between distinct genes."""
        if self.pairs is None:
            return self.n_genes * (self.n_genes - 1)
        return len(self.pairs)

    @property
    def density(self) -> float:
        """Allowed pairs between distinct genes / all such pairs (self-loops excluded)."""
        total = self.n_genes * (self.n_genes - 1)
        return self.n_pairs / total if total else 0.0

    def summary(self) -> dict:
        """Genes, TFs, edges, density and every mask choice, as a flat dict (JSON/``uns`` friendly)."""
        return {
            "mask": self.kind,
            "genes": int(self.n_genes),
            "tfs": int(self.n_tfs),
            "edges": int(self.n_pairs),
            "reference_edges": int(self.reference_pairs),
            "density": float(self.density),
            "direction": self.direction,
            "self_loops": bool(self.self_loops),
            "cls_attends_genes": True,
            "genes_attend_cls": bool(self.genes_attend_cls),
            "seed": self.seed,
        }

    def to_dense(self) -> np.ndarray:
        """``(n_genes, n_genes)`` boolean matrix, ``[query, key]``, self-loops included if enabled."""
        if self.pairs is None:
            dense = np.ones((self.n_genes, self.n_genes), dtype=bool)
            if not self.self_loops:
                np.fill_diagonal(dense, False)
            return dense
        dense = np.zeros((self.n_genes, self.n_genes), dtype=bool)
        dense[self.pairs[:, 0], self.pairs[:, 1]] = True
        if self.self_loops:
            np.fill_diagonal(dense, True)
        return dense


def _orient(tf: np.ndarray, target: np.ndarray, direction: str) -> np.ndarray:
    """(TF, target) edges -> unique (query, key) attention pairs without self pairs."""
    pairs = np.stack([target, tf], axis=1)  # target's query reads the TF's key
    if direction == "both":
        pairs = np.concatenate([pairs, pairs[:, ::-1]])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0).astype(np.int64)


def _pair_weights(pairs: np.ndarray, tf: np.ndarray, target: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    lookup = pd.Series(weight, index=target.astype(np.int64) * n + tf)
    lookup = lookup[~lookup.index.duplicated()]
    out = lookup.reindex(pairs[:, 0] * n + pairs[:, 1]).to_numpy()
    # reverse pairs of direction="both" read the TF -> target weight
    rev = lookup.reindex(pairs[:, 1] * n + pairs[:, 0]).to_numpy()
    return np.where(np.isnan(out), rev, out)


def _repair_collisions(tf: np.ndarray, target: np.ndarray, n_genes: int, seed: int, max_rounds: int = 50) -> np.ndarray:
    """Swap targets between edges until no edge repeats another or points a TF at itself.

    A plain permutation of targets (decoupler's ``shuffle_net``) keeps every TF's and every target's
    degree but makes some edges collide, which would lower the density of the control. Swapping the
    targets of a colliding edge and a random other edge keeps both degree sequences.
    """
    target = target.copy()
    rng = np.random.default_rng(seed + 1)
    for _ in range(max_rounds):
        codes = tf * n_genes + target
        bad = (tf == target) | pd.Series(codes).duplicated().to_numpy()
        if not bad.any():
            break
        seen = set(codes[~bad].tolist())
        for i in np.flatnonzero(bad):
            for j in rng.integers(0, len(tf), size=32):
                if bad[j] or j == i:
                    continue
                a, b = tf[i] * n_genes + target[j], tf[j] * n_genes + target[i]
                if tf[i] == target[j] or tf[j] == target[i] or a in seen or b in seen or a == b:
                    continue
                seen.discard(tf[j] * n_genes + target[j])
                target[i], target[j] = target[j], target[i]
                seen.update((a, b))
                bad[i] = False
                break
    return target


def _random_pairs(n_genes: int, n_pairs: int, symmetric: bool, rng: np.random.Generator) -> np.ndarray:
    total = n_genes * (n_genes - 1) // (2 if symmetric else 1)
    want = n_pairs // 2 if symmetric else n_pairs
    if want > total:
        raise ValueError(f"Cannot place {want} random pairs among {n_genes} genes.")
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < want:
        q = rng.integers(0, n_genes, size=2 * (want - len(codes)) + 16)
        k = rng.integers(0, n_genes, size=len(q))
        if symmetric:
            q, k = np.minimum(q, k), np.maximum(q, k)
        ok = q != k
        new = q[ok] * n_genes + k[ok]
        codes = np.unique(np.concatenate([codes, new]))
    codes = rng.permutation(codes)[:want]
    pairs = np.stack([codes // n_genes, codes % n_genes], axis=1)
    if symmetric:
        pairs = np.concatenate([pairs, pairs[:, ::-1]])
    return np.unique(pairs, axis=0).astype(np.int64)


def build_mask(
    n_genes: int,
    edges: pd.DataFrame,
    *,
    kind: MaskKind = "grn",
    direction: Direction = "tf_to_target",
    self_loops: bool = True,
    genes_attend_cls: bool = False,
    seed: int = 0,
) -> GRNMask:
    """Build the attention mask of a gene panel from its regulon edges, or a control of the same density.

    Parameters
    ----------
    n_genes
        Panel size (number of gene tokens).
    edges
        Regulon edges among panel genes with integer columns ``source_idx`` (TF) and ``target_idx``
        and a ``weight`` column, e.g. :attr:`GenePanel.edges`.
    kind
        ``"grn"``: attention only along regulon edges. ``"dense"``: every pair (no mask).
        ``"random"``: uniformly random pairs, as many as the GRN mask has (for ``direction="both"``,
        random undirected pairs). ``"shuffled"``: degree-preserving: the targets of the regulon edges are
        permuted (as :func:`decoupler.pp.shuffle_net` does), so every TF keeps its number of targets and every
        target its number of TFs; edges that collide after the permutation (duplicates, TF onto itself)
        are repaired by target swaps that keep both degrees, so the realised density matches the GRN mask
        (any remaining collision collapses and shows in :meth:`GRNMask.summary`).
    direction
        ``"tf_to_target"``: a target's query attends to its TFs. ``"both"``: also TFs to their targets.
    self_loops
        Every gene token attends to itself (recommended: a gene without TFs then keeps its own state).
    genes_attend_cls
        Whether gene tokens may read the CLS token (the CLS token always reads every gene).
    seed
        Seed for ``"random"`` and ``"shuffled"``.

    Returns
    -------
    The :class:`GRNMask`.

    Examples
    --------
    >>> import pandas as pd
    >>> import sctransformer_tools as sct
    >>> edges = pd.DataFrame({"source_idx": [0, 0, 1], "target_idx": [2, 3, 3], "weight": [1.0, -1.0, 1.0]})
    >>> mask = sct.grn.build_mask(4, edges)
    >>> mask.pairs.tolist()  # (query = target, key = TF)
    [[2, 0], [3, 0], [3, 1]]
    >>> round(mask.density, 3), sct.grn.build_mask(4, edges, kind="random").n_pairs
    (0.25, 3)
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"Unknown mask {kind!r}: choose one of {MASK_KINDS}.")
    if direction not in DIRECTIONS:
        raise ValueError(f"Unknown direction {direction!r}: choose one of {DIRECTIONS}.")
    tf = edges["source_idx"].to_numpy(dtype=np.int64)
    target = edges["target_idx"].to_numpy(dtype=np.int64)
    weight = edges["weight"].to_numpy(dtype=float)
    if len(tf) and (max(tf.max(), target.max()) >= n_genes or min(tf.min(), target.min()) < 0):
        raise ValueError("edges index genes outside the panel.")
    grn_pairs = _orient(tf, target, direction)
    common = {
        "kind": kind,
        "n_genes": int(n_genes),
        "direction": direction,
        "self_loops": bool(self_loops),
        "genes_attend_cls": bool(genes_attend_cls),
        "n_tfs": len(np.unique(tf)),
        "reference_pairs": len(grn_pairs),
    }
    if kind == "grn":
        return GRNMask(pairs=grn_pairs, pair_weight=_pair_weights(grn_pairs, tf, target, weight, n_genes), **common)
    if kind == "dense":
        return GRNMask(pairs=None, pair_weight=None, **common)
    if kind == "random":
        pairs = _random_pairs(n_genes, len(grn_pairs), direction == "both", np.random.default_rng(seed))
        return GRNMask(pairs=pairs, pair_weight=np.ones(len(pairs)), seed=seed, **common)
    # The permutation of decoupler.pp.shuffle_net (targets shuffled, TFs and weights kept); shuffle_net
    # itself drops the edges that collide (~8% of CollecTRI on pbmc3k), which would lower the density.
    rng = np.random.default_rng(seed)
    s_target = _repair_collisions(tf, rng.permutation(target), n_genes, seed)
    codes = tf * n_genes + s_target
    n_left = int(((tf == s_target) | pd.Series(codes).duplicated().to_numpy()).sum())
    if n_left:
        warnings.warn(
            f"The shuffled mask keeps {n_left:,} of {len(tf):,} permuted edges colliding (a TF onto itself or an "
            "edge repeated) after the degree-preserving repair: they collapse, so its density is "
            f"{n_left / max(len(tf), 1):.2%} below the GRN mask's (see mask_summary()). This happens when a few TFs "
            "hold most edges of a small panel; another seed may repair them all.",
            UserWarning,
            stacklevel=2,
        )
    pairs = _orient(tf, s_target, direction)
    weights = _pair_weights(pairs, tf, s_target, weight, n_genes)
    return GRNMask(pairs=pairs, pair_weight=weights, seed=seed, **common)
