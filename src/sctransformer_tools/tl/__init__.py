"""Analyses of a trained model: TF programs per group, attention vs TF activity, gene-embedding audit, MAM's choice.

Outputs follow one rule across the package, as in scanpy:

- model methods (``predict``, ``get_latent_representation``, ``get_attention``) write under documented keys of the
  AnnData they read (``key_added=``) and return the result;
- ``tl`` functions that compute from an AnnData write under ``adata.uns[key_added]`` (``inplace=False``: only
  return) and return the result; readers of what a model method wrote (:func:`tf_programs`) and analyses of the
  model alone (:func:`gene_embedding_audit`) only return;
- ``pl`` functions read whatever key the user chose (``key=``).
"""

from ._embedding_audit import gene_embedding_audit
from ._masking import masking_preference_summary
from ._tf_activity import compare_tf_activity
from ._tf_programs import tf_programs
from ._utils import attention_tables

__all__ = [
    "attention_tables",
    "compare_tf_activity",
    "gene_embedding_audit",
    "masking_preference_summary",
    "tf_programs",
]
