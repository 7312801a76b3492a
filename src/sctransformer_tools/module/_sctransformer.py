"""The scTransformer network: gene tokens -> GRN-masked Transformer -> CLS embedding -> cell type."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

from sctransformer_tools.nn import TokenPairs, TransformerBlock

from ._adapter import QueryAdapter
from ._batch import CellBatch
from ._classification import CellTypeClassification
from ._objective import EncoderOutput, EncoderViews, Objective, TokenHook
from ._profile import ExpressionProfile
from ._tokenizer import ExpressedGeneTokenizer, GeneTokens


class ValueEncoder(nn.Module):
    """Embed a scalar expression value with a small MLP (continuous, no binning)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, d_model), nn.SiLU(), nn.Linear(d_model, d_model))

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """``(..., )`` values -> ``(..., d_model)``."""
        return self.net(values.unsqueeze(-1))


#: Cost of one allowed pair on the sparse path relative to one (query, key) slot of dense masked SDPA:
#: about 0.5 us per pair vs 25 ns per slot for the attention proper, forward + backward, in
#: ``benchmarks/attention.py`` (1,000 and 4,000 genes, batch 8, 2 CPU threads, torch 2.13).
SPARSE_PAIR_COST = 20.0


def sparse_attention_pays(n_pairs: int, layout) -> bool:
    """Whether the sparse path is predicted to be faster than dense masked attention for a minibatch.

    Dense attention works on ``cells x slots²`` (query, key) slots, the sparse path on the allowed pairs,
    each about :data:`SPARSE_PAIR_COST` times as expensive as a dense slot.

    Examples
    --------
    >>> import torch
    >>> from sctransformer_tools.nn import TokenLayout
    >>> from sctransformer_tools.module._sctransformer import sparse_attention_pays
    >>> layout = TokenLayout.from_counts(torch.tensor([999, 999]))  # 2 cells x 1,000 slots
    >>> sparse_attention_pays(20_000, layout), sparse_attention_pays(1_000_000, layout)
    (True, False)
    """
    return n_pairs * SPARSE_PAIR_COST < layout.n_cells * layout.n_slots**2


class SCTransformerModule(BaseModuleClass):
    """GRN-masked Transformer over a cell's expressed genes; its CLS token is the cell embedding.

    Tokens are the panel genes a cell expresses (see :class:`ExpressedGeneTokenizer`): gene identity
    embedding + expression value embedding (an MLP of the value, plus a gene-specific direction scaled
    by the value). A CLS token (plus a batch embedding when there are batches; 10% of training cells
    get the "unseen batch" embedding that query cells of new batches use) is prepended. Gene tokens
    attend along the mask's allowed pairs (and to themselves when ``self_loops``); the CLS token
    attends to every gene, genes attend to the CLS token only when ``genes_attend_cls``. The final CLS state,
    layer-normalised, is the cell embedding. With ``profile_genes``, the CLS token starts from the cell's whole
    expression profile (:class:`~sctransformer_tools.module.ExpressionProfile`). What the encoder is trained for
    are objectives (:class:`~sctransformer_tools.module.Objective`, in ``objectives``): each owns its head and
    loss, and :meth:`forward` returns the losses of those a training step asks for; cell-type classification (a
    linear classifier on the embedding) is built in. The encoder computes nothing task-specific (:meth:`encode`).

    Parameters
    ----------
    n_input
        Number of input genes (columns of the registered matrix).
    n_labels
        Number of cell types. Label code ``n_labels`` marks unlabelled cells (ignored by the loss).
    panel_index
        Positions of the panel genes among the input genes.
    mask_pairs
        ``(n_pairs, 2)`` allowed ``(query, key)`` pairs between panel genes; ``None`` for no mask.
    pair_weight
        Regulon weight per pair, used only when ``edge_bias``.
    n_batch
        Number of batches (0 or 1: no batch embedding). Code ``n_batch`` is the "unseen batch".
    d_model, n_layers, n_heads
        Width, depth and heads of the Transformer.
    dropout
        Dropout in the feed-forward and residual branches (off by default: random gene dropping
        regularises better and costs nothing, whereas dropout masks cost ~40% of a CPU training step).
    self_loops
        Gene tokens attend to themselves.
    genes_attend_cls
        Gene tokens may attend to the CLS token.
    dense_heads
        Heads per layer that ignore the mask.
    masked_layers
        Layers (0-based) that use the mask; ``None`` for all.
    edge_bias
        Add ``scale[layer, head] * weight`` to the attention logits of allowed pairs (learned scales).
    max_tokens
        Cap on gene tokens per cell.
    attention
        Path of masked layers: ``"sparse"`` (cost grows with allowed pairs), ``"dense"`` (masked
        scaled-dot-product attention over all token pairs; the reference) or ``"auto"`` (per minibatch,
        whichever :func:`sparse_attention_pays` predicts is faster). Unmasked layers always run dense.
    log_normalized
        Input is log-normalised rather than counts.
    size_factors
        ``"panel"`` or ``"library"``: what each cell's counts are divided by (see
        :class:`~sctransformer_tools.module.ExpressedGeneTokenizer`).
    token_dropout
        Probability of dropping each expressed gene while training.
    label_smoothing
        Label smoothing of the cross-entropy.
    class_weights
        Optional per-class loss weights.
    gene_value
        Add a gene-specific value direction to each token: ``token = E_g + v F_g + f(v)`` (``E_g`` gene
        embedding, ``v`` log-normalised expression, ``f`` a small MLP). Lets attention pooling read
        gene-specific magnitudes linearly; it speeds up early training markedly on pbmc3k.
    embedding_std
        Initial standard deviation of the gene embeddings. Gene identity must be visible next to the
        value embedding from the start: with BERT's 0.02 the model first sees only expression values and
        learns several times slower (held-out macro-F1 on pbmc3k 0.73 vs 0.87 at the same budget).
    profile_genes
        Positions, among the panel genes, of the genes of the expression profile added to the CLS token;
        ``None`` for no profile.
    profile_components
        Principal components of the profile (its projection is installed with
        ``module.profile.set_projection``).
    """

    def __init__(
        self,
        n_input: int,
        n_labels: int,
        panel_index: Sequence[int] | np.ndarray,
        mask_pairs: np.ndarray | None,
        pair_weight: np.ndarray | None = None,
        n_batch: int = 0,
        *,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        dropout: float = 0.0,
        self_loops: bool = True,
        genes_attend_cls: bool = False,
        dense_heads: int = 0,
        masked_layers: Sequence[int] | None = None,
        edge_bias: bool = False,
        max_tokens: int = 2048,
        attention: str = "auto",
        log_normalized: bool = False,
        size_factors: str = "library",
        token_dropout: float = 0.3,
        label_smoothing: float = 0.1,
        class_weights: Sequence[float] | None = None,
        gene_value: bool = True,
        embedding_std: float = 1.0,
        profile_genes: Sequence[int] | np.ndarray | None = None,
        profile_components: int = 50,
        profile_dropout: float = 0.0,
    ):
        super().__init__()
        self.n_input, self.n_labels, self.n_batch = n_input, n_labels, n_batch
        self.n_layers, self.n_heads = n_layers, n_heads
        self.self_loops, self.genes_attend_cls = self_loops, genes_attend_cls
        self.masked_layers = tuple(range(n_layers)) if masked_layers is None else tuple(sorted(set(masked_layers)))
        if any(not 0 <= layer < n_layers for layer in self.masked_layers):
            raise ValueError(f"masked_layers must lie in 0..{n_layers - 1}, got {masked_layers}.")
        self.token_dropout = token_dropout
        self.tokenizer = ExpressedGeneTokenizer(
            torch.as_tensor(np.asarray(panel_index)), max_tokens, log_normalized, size_factors=size_factors
        )
        n_genes = self.tokenizer.n_genes
        self.gene_embedding = nn.Embedding(n_genes, d_model)
        nn.init.normal_(self.gene_embedding.weight, std=embedding_std)
        # optional gene-specific value direction: token = E_g + v * F_g + f(v)
        self.gene_value = nn.Embedding(n_genes, d_model) if gene_value else None
        if self.gene_value is not None:
            nn.init.normal_(self.gene_value.weight, std=embedding_std)
        self.value_encoder = ValueEncoder(d_model)
        self.adapter: QueryAdapter | None = None
        self.profile_dropout = float(profile_dropout)
        self.profile = None
        if profile_genes is not None and len(profile_genes) and profile_components > 0:
            self.profile = ExpressionProfile(np.asarray(profile_genes), profile_components, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.batch_embedding = nn.Embedding(n_batch + 1, d_model) if n_batch > 1 else None
        self.blocks = nn.ModuleList(
            [TransformerBlock(d_model, n_heads, dropout=dropout, dense_heads=dense_heads) for _ in range(n_layers)]
        )
        self.norm = nn.LayerNorm(d_model)
        self.objectives = nn.ModuleDict(
            {
                CellTypeClassification.name: CellTypeClassification(
                    d_model, n_labels, label_smoothing=label_smoothing, class_weights=class_weights
                )
            }
        )
        self.edge_bias = edge_bias
        if attention not in ("auto", "sparse", "dense"):
            raise ValueError(f"attention must be 'auto', 'sparse' or 'dense', got {attention!r}.")
        self.attention_path = attention
        self.bias_scale = nn.Parameter(torch.zeros(n_layers, n_heads)) if edge_bias else None
        self.set_mask(mask_pairs, pair_weight)

    # ------------------------------------------------------------------ mask
    def set_mask(self, pairs: np.ndarray | torch.Tensor | None, weight: np.ndarray | torch.Tensor | None = None):
        """Install the allowed gene pairs (``None``: no mask) as buffers.

        The pairs are saved with the model; a CSR adjacency (for each query gene, its allowed key
        genes, with their regulon weights) is rebuilt from them and not saved.
        """
        n = self.tokenizer.n_genes
        if pairs is None:
            pairs_t = torch.zeros(0, 2, dtype=torch.long)
            weight_t = torch.zeros(0)
            has_mask = False
        else:
            pairs_t = torch.as_tensor(np.asarray(pairs), dtype=torch.long).reshape(-1, 2)
            weight_t = (
                torch.ones(len(pairs_t)) if weight is None else torch.as_tensor(np.asarray(weight), dtype=torch.float32)
            )
            has_mask = True
        device = self.cls.device
        self.register_buffer("mask_pairs", pairs_t.to(device))
        self.register_buffer("mask_pair_weight", weight_t.to(device))
        self.register_buffer("has_mask", torch.tensor(has_mask, device=device))
        order = torch.argsort(pairs_t[:, 0] * n + pairs_t[:, 1])
        counts = torch.bincount(pairs_t[:, 0], minlength=n)
        indptr = torch.zeros(n + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(counts, 0)
        self.register_buffer("csr_indptr", indptr.to(device), persistent=False)
        self.register_buffer("csr_indices", pairs_t[order, 1].contiguous().to(device), persistent=False)
        self.register_buffer("csr_weight", weight_t[order].contiguous().to(device), persistent=False)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load weights; the mask buffers may differ in size from the freshly built ones."""
        state_dict = dict(state_dict)
        pairs = state_dict.pop("mask_pairs", None)
        weight = state_dict.pop("mask_pair_weight", None)
        has_mask = state_dict.pop("has_mask", None)
        if pairs is not None:
            self.set_mask(pairs if has_mask is None or bool(has_mask) else None, weight)
        missing, unexpected = super().load_state_dict(state_dict, strict=False, assign=assign)
        missing = [k for k in missing if k not in ("mask_pairs", "mask_pair_weight", "has_mask")]
        if strict and (missing or unexpected):
            raise RuntimeError(f"Error loading SCTransformerModule: missing {missing}, unexpected {unexpected}.")
        return nn.modules.module._IncompatibleKeys(missing, unexpected)

    def gene_mask_dense(self) -> torch.Tensor:
        """``(n_genes, n_genes)`` boolean ``[query, key]`` mask, self-loops included when enabled."""
        n = self.tokenizer.n_genes
        if not bool(self.has_mask):
            dense = torch.ones(n, n, dtype=torch.bool, device=self.cls.device)
        else:
            dense = torch.zeros(n, n, dtype=torch.bool, device=self.cls.device)
            dense[self.mask_pairs[:, 0], self.mask_pairs[:, 1]] = True
        diag = torch.arange(n, device=dense.device)
        dense[diag, diag] = self.self_loops
        return dense

    def token_pairs(self, tokens: GeneTokens) -> tuple[TokenPairs, torch.Tensor]:
        """Allowed pairs among a minibatch's packed [CLS..., genes...] tokens, and each pair's regulon weight.

        Built from the CSR adjacency in ``O(tokens x degree)``: for each gene token, its allowed key
        genes are looked up and kept where the cell expresses them.
        """
        b, n = tokens.n_cells, self.tokenizer.n_genes
        device = tokens.cell.device
        cell, gene = tokens.cell, tokens.gene_ids
        flat = b + torch.arange(len(gene), device=device)  # packed position of each gene token
        cls_flat = torch.arange(b, device=device)
        zeros = torch.zeros(len(flat), device=device)
        queries, keys, weights = (
            [cls_flat, cell],
            [cls_flat, flat],
            [torch.zeros(b, device=device), zeros],
        )  # CLS reads all
        if self.self_loops:
            queries.append(flat), keys.append(flat), weights.append(zeros)
        if self.genes_attend_cls:
            queries.append(flat), keys.append(cell), weights.append(zeros)
        if bool(self.has_mask) and len(self.csr_indices):
            where = torch.full((b, n), -1, dtype=torch.long, device=device)  # (cell, gene) -> packed position
            where[cell, gene] = flat
            start, stop = self.csr_indptr[gene], self.csr_indptr[gene + 1]
            degree = stop - start
            owner = torch.repeat_interleave(torch.arange(len(gene), device=device), degree)
            offset = torch.arange(len(owner), device=device) - torch.repeat_interleave(
                torch.cumsum(degree, 0) - degree, degree
            )
            slot = start[owner] + offset
            key_flat = where[cell[owner], self.csr_indices[slot]]
            hit = key_flat >= 0
            queries.append(flat[owner][hit]), keys.append(key_flat[hit]), weights.append(self.csr_weight[slot][hit])
        pairs = TokenPairs(torch.cat(queries), torch.cat(keys), tokens.layout.n_tokens, group=tokens.layout.cell)
        return pairs, torch.cat(weights)

    def padded_gene_ids(self, tokens: GeneTokens) -> torch.Tensor:
        """``(cells, slots)`` panel gene of every padded slot; -1 for CLS and padding."""
        ids = torch.cat([torch.full((tokens.n_cells,), -1, device=tokens.cell.device), tokens.gene_ids])
        return tokens.layout.pad(ids, fill=-1)

    def dense_allowed(self, tokens: GeneTokens, use_mask: bool) -> torch.Tensor:
        """``(cells, slots, slots)`` boolean mask of the dense path (the reference), padded layout."""
        valid = tokens.layout.valid()
        allowed = valid[:, :, None] & valid[:, None, :]
        if not self.genes_attend_cls:
            allowed[:, 1:, 0] = False
        if use_mask:
            ids = self.padded_gene_ids(tokens)[:, 1:].clamp(min=0)
            allowed[:, 1:, 1:] &= self.gene_mask_dense()[ids[:, :, None], ids[:, None, :]]
        if not self.self_loops and not use_mask:
            diag = torch.arange(1, allowed.shape[1], device=allowed.device)
            allowed[:, diag, diag] = False
        return allowed

    # ------------------------------------------------------------ the encoder
    def embed_tokens(
        self, batch: CellBatch, token_dropout: float = 0.0, repeat: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, GeneTokens]:
        """The inputs of the first block: CLS tokens ``(cells, d_model)``, and per gene token its identity
        embedding and its value embedding (``(gene tokens, d_model)`` each; the token is their sum).

        With ``repeat``, every cell is read ``repeat`` times as consecutive cells that share their gene tokens (the
        same token dropout): cell ``c`` of ``batch`` becomes cells ``c * repeat .. c * repeat + repeat - 1``.
        """
        tokens = self.tokenizer(batch.x, batch.library, drop_prob=token_dropout, measured=batch.measured)
        if repeat != 1:
            tokens, batch = tokens.repeat(repeat), batch.repeat_cells(repeat)
        values, expression = tokens.values, tokens.expression
        if self.adapter is not None:  # a query model: what the encoder reads is adapted; the tokens keep the data's
            values, expression = self.adapter.adapt(values, tokens.gene_ids), self.adapter.adapt(expression)
        identity = self.gene_embedding(tokens.gene_ids)
        value = self.value_encoder(values)
        if self.gene_value is not None:
            value = value + values.unsqueeze(-1) * self.gene_value(tokens.gene_ids)
        n_cells = batch.n_cells
        cls = self.cls.reshape(1, -1).expand(n_cells, -1)
        if self.profile is not None:
            profile = self.profile(expression, batch.measured).to(cls.dtype)
            if self.training and self.profile_dropout > 0:  # some cells read from their gene tokens alone
                keep = torch.rand(n_cells, 1, device=profile.device) >= self.profile_dropout
                profile = profile * keep
            cls = cls + profile
        if self.adapter is not None:
            cls = cls + self.adapter.cls_offset.to(cls.dtype)
        if self.batch_embedding is not None:
            if batch.batch_index is None:
                idx = torch.full((n_cells,), self.n_batch, dtype=torch.long, device=batch.x.device)
            else:
                idx = batch.batch_index.long().clamp(max=self.n_batch)
                if self.training:  # teach the "unseen batch" embedding what a query from a new batch needs
                    unseen = torch.rand(idx.shape, device=idx.device) < 0.1
                    idx = idx.masked_fill(unseen, self.n_batch)
            cls = cls + self.batch_embedding(idx)
        return cls, identity, value, tokens

    def encode(
        self,
        batch: CellBatch,
        *,
        token_dropout: float = 0.0,
        token_hook: TokenHook | None = None,
        return_hidden: bool = False,
        return_layers: bool = False,
        need_weights: bool = False,
        repeat: int = 1,
    ) -> EncoderOutput:
        """Read a minibatch: cell embeddings, and on request the gene tokens' states and the attention.

        Parameters
        ----------
        batch
            The cells (:class:`~sctransformer_tools.module.CellBatch`).
        token_dropout
            Share of each cell's expressed genes dropped at random (an augmentation while training).
        token_hook
            ``hook(identity, value, tokens) -> gene token inputs``, applied before the first block: where an
            objective changes what the encoder reads (e.g. hides some tokens' expression values).
        return_hidden
            Also return the final state of every gene token (``hidden``, packed like ``tokens``).
        return_layers
            Also return every token's state after each block (``layers``; CLS tokens first, then genes).
        need_weights
            Also return the attention weights: per layer, ``(pairs, weights)`` with ``weights`` of shape
            ``(n_pairs, heads)`` on the sparse path, or ``(None, weights)`` with ``(batch, heads, 1 + tokens,
            1 + tokens)`` weights on the dense path.
        repeat
            Read every cell ``repeat`` times, as consecutive cells sharing their gene tokens (and token dropout),
            so that a token hook can draw several independent choices per cell in one pass (see
            :meth:`embed_tokens`); everything returned then has ``repeat`` times as many cells.

        Returns
        -------
        The :class:`~sctransformer_tools.module.EncoderOutput`.
        """
        cls, identity, value, tokens = self.embed_tokens(batch.to(self.cls.device), token_dropout, repeat)
        genes = identity + value if token_hook is None else token_hook(identity, value, tokens)
        h = torch.cat([cls.to(genes.dtype), genes], dim=0)
        layout = tokens.layout
        # nothing reads the gene tokens' states after the last block unless they are asked for: its CLS rows only
        last = self.n_layers - 1 if not (return_hidden or return_layers or need_weights) else None
        full = range(self.n_layers if last is None else last)  # blocks run on every token
        masked_full = [layer for layer in full if layer in self.masked_layers] if bool(self.has_mask) else []
        sparse = self.attention_path != "dense" and bool(masked_full)
        pairs = pair_weight = grn_allowed = dense_allowed = None
        if sparse:
            pairs, pair_weight = self.token_pairs(tokens)
            if self.attention_path == "auto" and not sparse_attention_pays(len(pairs.query), layout):
                sparse, pairs, pair_weight = False, None, None
        if not sparse and masked_full:
            grn_allowed = self.dense_allowed(tokens, use_mask=True)
        if len(masked_full) < len(full):  # unmasked blocks: every token reads every token of its cell
            dense_allowed = self.dense_allowed(tokens, use_mask=False)
        attention, layers = [], []
        for layer, block in enumerate(self.blocks):
            if layer == last:
                h = torch.cat([block.forward_cls(h, layout), h[tokens.n_cells :]])
                break
            masked = layer in self.masked_layers and bool(self.has_mask)
            bias = None
            if masked and self.edge_bias:
                scale = self.bias_scale[layer, : self.n_heads - block.attn.dense_heads]
                if sparse:
                    bias = pair_weight[:, None] * scale[None, :]
                else:
                    ids = self.padded_gene_ids(tokens).clamp(min=0)
                    w = self.gene_weight_dense()[ids[:, :, None], ids[:, None, :]]
                    w[:, 0, :] = 0
                    w[:, :, 0] = 0
                    bias = scale[None, :, None, None] * w[:, None]
            if masked and sparse:
                h, weights = block(h, pairs=pairs, layout=layout, bias=bias, need_weights=need_weights)
                attention.append((pairs, weights))
            else:
                allowed = grn_allowed if masked else dense_allowed
                h, weights = block(h, allowed, layout=layout, bias=bias, need_weights=need_weights)
                attention.append((None, weights))
            if return_layers:
                layers.append(h)
        return EncoderOutput(
            embedding=self.norm(h[: tokens.n_cells]),
            tokens=tokens,
            hidden=h[tokens.n_cells :] if return_hidden else None,
            attention=attention if need_weights else None,
            layers=layers if return_layers else None,
        )

    def views(self, batch: CellBatch) -> EncoderViews:
        """The readings of ``batch`` that a training step's objectives share."""
        classifier = self.objectives[CellTypeClassification.name] if self.has_classifier else None
        return EncoderViews(
            self.encode,
            batch,
            self.token_dropout if self.training else 0.0,
            classify=None if classifier is None else classifier.logits,
        )

    @property
    def has_classifier(self) -> bool:
        """Whether the module holds the cell-type classifier."""
        return CellTypeClassification.name in self.objectives

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """The cell-type classifier's logits on cell embeddings."""
        return self.objectives[CellTypeClassification.name].logits(embedding)

    def gene_embeddings(self) -> torch.Tensor:
        """``(panel genes, d_model)`` gene identity embeddings (one row per panel gene)."""
        return self.gene_embedding.weight

    # ------------------------------------------------------------ scvi hooks
    def _get_inference_input(self, tensors: Mapping[str, torch.Tensor]) -> dict[str, CellBatch]:
        return {"batch": CellBatch.from_tensors(tensors)}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def inference(self, batch: CellBatch, **encode_kwargs) -> dict:
        """scvi-tools' inference step: :meth:`encode` (with the training token dropout while training), as a dict."""
        encode_kwargs.setdefault("token_dropout", self.token_dropout if self.training else 0.0)
        out = self.encode(batch, **encode_kwargs)
        return {"embedding": out.embedding, "tokens": out.tokens, "encoded": out}

    def gene_weight_dense(self) -> torch.Tensor:
        """``(n_genes, n_genes)`` regulon weight of each allowed pair (0 elsewhere)."""
        n = self.tokenizer.n_genes
        dense = torch.zeros(n, n, device=self.cls.device, dtype=self.mask_pair_weight.dtype)
        dense[self.mask_pairs[:, 0], self.mask_pairs[:, 1]] = self.mask_pair_weight
        return dense

    def generative(self) -> dict:
        """No generative part: scTransformer is a discriminative model."""
        return {}

    def add_adapter(self) -> QueryAdapter:
        """Add the query-specific parameters of reference mapping (:class:`QueryAdapter`), changing nothing yet."""
        if self.adapter is None:
            self.adapter = QueryAdapter(self.tokenizer.n_genes, self.cls.numel()).to(self.cls.device)
        return self.adapter

    def add_objective(self, objective: Objective) -> None:
        """Add a training objective (its head and loss); training steps name the objectives they train."""
        if not objective.name:
            raise ValueError("An objective needs a name.")
        self.objectives[objective.name] = objective.to(self.cls.device)

    def forward(self, tensors, objectives: Sequence[str] = (CellTypeClassification.name,)) -> dict[str, LossOutput]:
        """The losses of ``objectives`` on a minibatch (scvi-tools tensors, or a list of them read together).

        The objectives share the encoder's readings of the minibatch (:class:`EncoderViews`).
        """
        batch = CellBatch.from_tensors(tensors).to(self.cls.device)
        views = self.views(batch)
        return {name: self.objectives[name].loss(views, batch) for name in objectives}

    def loss(self, tensors, inference_outputs=None, generative_outputs=None) -> LossOutput:
        """scvi-tools' loss hook: the cell-type classification loss of a minibatch."""
        return self.forward(tensors)[CellTypeClassification.name]

    def sample(self, *args, **kwargs):
        """Not available: scTransformer classifies cells, it does not generate them."""
        raise NotImplementedError("SCTransformer is a discriminative model and cannot sample expression.")

    # ------------------------------------------------------------- attention
    @torch.inference_mode()
    def pair_attention(
        self,
        batch: CellBatch,
        pair_codes: torch.Tensor,
        layers: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Attention on given gene pairs, per cell, averaged over heads and ``layers``.

        Heads left dense (``dense_heads``) are not read on masked layers.

        Parameters
        ----------
        batch
            A minibatch.
        pair_codes
            Sorted ``query_gene * n_genes + key_gene`` codes of the pairs to read (e.g. target * G + TF).
        layers
            Layers to average; all when ``None``.

        Returns
        -------
        ``pairs`` ``(batch, n_pairs)``: attention weight of the query gene on the key gene in each cell (0
        where either gene is not a token or the pair is not allowed); ``present`` ``(batch, n_pairs)``:
        both genes are tokens; ``cls`` ``(batch, n_genes)``: attention of the CLS token on each gene
        (mean over heads and layers).
        """
        out = self.encode(batch, need_weights=True)
        tokens: GeneTokens = out.tokens
        layout = tokens.layout
        layers = list(range(self.n_layers)) if layers is None else list(layers)
        b, n_genes, n_pairs = tokens.n_cells, self.tokenizer.n_genes, len(pair_codes)
        device = out.embedding.device
        gene_of = torch.cat([torch.full((b,), -1, device=device), tokens.gene_ids])  # packed: -1 for CLS
        cell_of = layout.cell
        dtype = out.embedding.dtype
        pairs = torch.zeros(b * max(n_pairs, 1), device=device, dtype=dtype)
        cls = torch.zeros(b * n_genes, device=device, dtype=dtype)
        for layer in layers:
            token_pairs, weights = out.attention[layer]
            if token_pairs is None:  # dense path: (b, h, slots, slots); read the masked heads, as the sparse path
                masked = layer in self.masked_layers and bool(self.has_mask)
                n_read = self.n_heads - self.blocks[layer].attn.dense_heads if masked else self.n_heads
                w = weights[:, : max(n_read, 1)].mean(1)
                packed = torch.full((b, layout.n_slots), -1, dtype=torch.long, device=device)
                packed[layout.cell, layout.slot] = torch.arange(layout.n_tokens, device=device)
                nz = (w > 0).nonzero(as_tuple=True)
                query, key, w = packed[nz[0], nz[1]], packed[nz[0], nz[2]], w[nz]
            else:
                query, key, w = token_pairs.query, token_pairs.key, weights.mean(1)
            cell = cell_of[query]
            q_gene, k_gene = gene_of[query], gene_of[key]
            from_cls = (q_gene < 0) & (k_gene >= 0)
            cls.index_add_(0, cell[from_cls] * n_genes + k_gene[from_cls], w[from_cls])
            if n_pairs:
                genes = (q_gene >= 0) & (k_gene >= 0)
                codes = q_gene[genes] * n_genes + k_gene[genes]
                pos = torch.searchsorted(pair_codes, codes).clamp(max=n_pairs - 1)
                hit = pair_codes[pos] == codes
                pairs.index_add_(0, cell[genes][hit] * n_pairs + pos[hit], w[genes][hit])
        scale = 1.0 / len(layers)
        present = torch.zeros(b, max(n_pairs, 1), device=device)
        if n_pairs:  # both genes are tokens of the cell
            has = torch.zeros(b, n_genes, dtype=torch.bool, device=device)
            has[tokens.cell, tokens.gene_ids] = True
            present = (has[:, pair_codes // n_genes] & has[:, pair_codes % n_genes]).float()
        return {
            "pairs": (pairs * scale).view(b, -1)[:, :n_pairs],
            "present": present[:, :n_pairs],
            "cls": (cls * scale).view(b, n_genes),
        }
