"""``precision="auto"``: train in bfloat16 autocast only where it is measured to be faster here.

CPUs and GPUs that advertise bfloat16 do not always run this model faster in it (the sparse attention
kernels stay float32, and small matrices gain little), and CPUs without native bfloat16 emulate it at a
fraction of float32's speed. So the choice is made by timing: a few forward + backward passes of the model
on a small slice of a real minibatch in float32 and in bf16 autocast, alternated; bf16 is chosen when it takes
less than :data:`BF16_MARGIN` of float32's time. The weights are untouched (no optimiser step, gradients
cleared) and the random state is restored, so training is the same as without the measurement. The result is
remembered for the process (per device and model shape).
"""

from __future__ import annotations

import time
from typing import Any

import torch

#: bf16 must take less than this share of float32's time to be chosen.
BF16_MARGIN = 0.8
#: Cells of the minibatch slice the passes are timed on (a training minibatch: with fewer, bf16's gain on the
#: matrix products does not show).
PROBE_CELLS = 32
_CHOICES: dict[tuple, dict[str, Any]] = {}


def _device_type(accelerator: str) -> str:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return "cpu"


def _time_pass(module, tensors: dict[str, torch.Tensor], device: str, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        out = module(tensors)["classification"]
    out.loss.float().backward()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def choose_precision(module, tensors: dict[str, torch.Tensor], accelerator: str = "auto") -> dict[str, Any]:
    """Time float32 against bf16 autocast on ``tensors`` (a minibatch) and return the faster precision.

    Parameters
    ----------
    module
        The :class:`~sctransformer_tools.module.SCTransformerModule` to train.
    tensors
        A training minibatch as the data loader yields it.
    accelerator
        Lightning accelerator of the run (``"auto"``, ``"cpu"``, ``"gpu"`` ...).

    Returns
    -------
    ``{"precision": "bf16-mixed" | "32-true", "float32_s": ..., "bf16_s": ..., "device": ...}``; seconds per
    pass on :data:`PROBE_CELLS` cells (``bf16_s`` is ``None`` where the device cannot run bf16 at all).

    Examples
    --------
    What ``train(precision="auto")`` picks for a model on this machine (a minibatch of scvi-tools' loader):

    >>> import sctransformer_tools as sct
    >>> adata = sct.ds.pbmc68k_reduced()
    >>> sct.SCTransformer.setup_anndata(adata, labels_key="bulk_labels")
    >>> model = sct.SCTransformer(adata, n_layers=1, d_model=16, n_heads=2, n_top_genes=0)
    >>> tensors = next(iter(model._make_data_loader(adata=adata, batch_size=32)))
    >>> sct.model.choose_precision(model.module, tensors, "cpu")["precision"] in ("bf16-mixed", "32-true")
    True
    """
    device = _device_type(accelerator)
    key = (device, module.tokenizer.n_genes, len(module.blocks), module.cls.shape[-1], module.n_heads)
    if key in _CHOICES:
        return dict(_CHOICES[key])
    if device == "cuda" and not torch.cuda.is_bf16_supported():
        _CHOICES[key] = {"precision": "32-true", "float32_s": None, "bf16_s": None, "device": device}
        return dict(_CHOICES[key])
    n = min(PROBE_CELLS, len(next(iter(tensors.values()))))
    probe = {k: (v[:n].to(device) if isinstance(v, torch.Tensor) else v) for k, v in tensors.items()}
    original_device = module.cls.device
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    was_training = module.training
    module.to(device).train()
    times = {"float32": [], "bf16": []}
    try:
        _time_pass(module, probe, device, bf16=False)  # warm-up of both paths
        times["float32"].append(_time_pass(module, probe, device, bf16=False))
        first_bf16 = _time_pass(module, probe, device, bf16=True)
        if first_bf16 < 3 * times["float32"][0]:  # emulated bf16 is many times slower: no need to insist
            for _ in range(2):
                times["bf16"].append(_time_pass(module, probe, device, bf16=True))
                times["float32"].append(_time_pass(module, probe, device, bf16=False))
        else:
            times["bf16"].append(first_bf16)
    finally:
        module.zero_grad(set_to_none=True)
        module.to(original_device)
        module.train(was_training)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
    float32_s, bf16_s = min(times["float32"]), min(times["bf16"])
    choice = "bf16-mixed" if bf16_s < BF16_MARGIN * float32_s else "32-true"
    _CHOICES[key] = {"precision": choice, "float32_s": float32_s, "bf16_s": bf16_s, "device": device}
    return dict(_CHOICES[key])
