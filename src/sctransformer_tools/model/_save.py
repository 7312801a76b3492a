"""``model.save`` and ``SCTransformer.load``: a model folder of tensors and plain data (:mod:`._folder`)."""

from __future__ import annotations

import os
from pathlib import Path

from ._folder import SavedModel, read_model_folder, write_model_folder
from ._mudata import is_mudata, rna_of


class SaveLoadMixin:
    """``save`` and ``load`` through the pickle-free model folder."""

    def save(
        self,
        dir_path: str | os.PathLike,
        overwrite: bool = False,
        save_anndata: bool = False,
        **anndata_write_kwargs,
    ) -> None:
        """Save the model to a folder of tensors and plain data (see :mod:`sctransformer_tools.model._save`).

        Parameters
        ----------
        dir_path
            Folder to write (created if needed).
        overwrite
            Replace a model already saved in ``dir_path``; without it an existing, non-empty folder is an error.
        save_anndata
            Also write the registered AnnData (``adata.h5ad``; a MuData: ``mdata.h5mu``), loaded back by
            :meth:`load` without ``adata``.
        **anndata_write_kwargs
            Passed to :meth:`anndata.AnnData.write_h5ad`.

        Examples
        --------
        >>> import tempfile
        >>> import sctransformer_tools as sct
        >>> adata = sct.ds.pbmc68k_reduced()
        >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
        >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
        >>> folder = tempfile.mkdtemp()
        >>> model.save(folder, overwrite=True)
        >>> sorted(p.name for p in Path(folder).iterdir())
        ['model.h5', 'weights.safetensors']
        """
        path = write_model_folder(dir_path, SavedModel.of_model(self), overwrite=overwrite)
        if save_anndata:
            if self.adata is None:
                raise ValueError("This model holds no AnnData to save (it was loaded without data).")
            if is_mudata(self.adata):
                self.adata.write_h5mu(path / "mdata.h5mu", **anndata_write_kwargs)
            else:
                self.adata.write_h5ad(path / "adata.h5ad", **anndata_write_kwargs)

    @classmethod
    def load(
        cls,
        dir_path: str | os.PathLike,
        adata=None,
        *,
        accelerator: str = "auto",
        device: int | str = "auto",
        allow_pickle: bool = False,
    ):
        """Load a model saved with :meth:`save`, without running any code from its folder.

        Parameters
        ----------
        dir_path
            Folder written by ``model.save``.
        adata
            The reference (genes identical to the model's; a MuData for a model set up with
            :meth:`~sctransformer_tools.SCTransformer.setup_mudata`): it is registered with the model, which can then
            read it by default and train further. Any other AnnData (a query) is not registered; pass it to
            :meth:`predict` & co. ``None``: the AnnData saved with the model (``save_anndata=True``), if any.
        accelerator, device
            Where to put the network (Lightning's names, e.g. ``"cpu"``, ``"gpu"``).
        allow_pickle
            Also read a folder written by the 0.1 releases (one pickled ``model.pt``). Opening a pickle can run
            arbitrary code: only for folders you trust, and then save the model again to get a pickle-free folder.

        Returns
        -------
        The model, in evaluation mode.

        Sets the following fields (when ``adata`` is the reference)
        ----------------------------------------------------------
        ``adata.obs["_scvi_labels"]``, ``adata.obs["_scvi_batch"]``, ``adata.obs["_sct_library_size"]``
            As :meth:`setup_anndata`.
        """
        import anndata as ad
        from scvi.data._constants import _SETUP_ARGS_KEY, _SETUP_METHOD_NAME
        from scvi.model._utils import parse_device_args

        from ._quiet import quiet_scvi
        from ._training import restore_objectives

        saved = read_model_folder(dir_path, cls.__name__, allow_pickle=allow_pickle)
        _, _, torch_device = parse_device_args(
            accelerator=accelerator, devices=device, return_device="torch", validate_single_device=True
        )
        registry, setup = saved.registry, saved.registry.get(_SETUP_METHOD_NAME, "setup_anndata")
        if adata is None and (Path(dir_path) / "adata.h5ad").exists():
            adata = ad.read_h5ad(Path(dir_path) / "adata.h5ad")
        elif adata is None and (Path(dir_path) / "mdata.h5mu").exists():
            import mudata

            adata = mudata.read_h5mu(Path(dir_path) / "mdata.h5mu")
        # the reference itself: the same kind of object, with the same genes
        register = adata is not None and (setup == "setup_mudata") == is_mudata(adata)
        register = register and rna_of(adata, registry).var_names.astype(str).equals(saved.var_names)
        if register:
            with quiet_scvi():
                getattr(cls, setup)(adata, source_registry=registry, **registry[_SETUP_ARGS_KEY])
        model = cls.__new__(cls)
        if not register:  # no data: the model's genes come from the folder (see SCTransformer.get_var_names)
            model._saved_var_names = saved.var_names.to_numpy()
        model.__init__(adata if register else None, spec=saved.spec, registry=registry)
        for name, value in saved.attributes.items():
            if name not in ("registry_", "spec_"):
                setattr(model, name, value)
        restore_objectives(model)
        if getattr(model, "mapping_", None) is not None:  # a query model: its query-specific parameters
            model.module.add_adapter()
        model.module.load_state_dict(saved.state_dict)
        model.to_device(torch_device)
        model.module.eval()
        if register:
            with quiet_scvi():
                model._validate_anndata(adata)
        return model
