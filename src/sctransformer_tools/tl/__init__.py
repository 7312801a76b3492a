"""Analyses of a trained model: TF programs per group, attention vs TF activity, gene-embedding audit."""

from ._embedding_audit import gene_embedding_audit
from ._tf_activity import compare_tf_activity
from ._tf_programs import tf_programs

__all__ = ["compare_tf_activity", "gene_embedding_audit", "tf_programs"]
