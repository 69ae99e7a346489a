"""LoRA on the SVD UNet's attention and feed-forward layers (peft), and merging it for export.

LoRA (Hu et al. 2021, arXiv 2106.09685) adds ``scale * B @ A`` (rank r, ``B`` zero-initialised, so a
fresh adapter changes nothing) to each targeted linear. DragNUWA 1.5 itself was trained with LoRA
rank 32 on every linear of the UNet (``../shared/nuwa15/README.md``); here the targets are the
attention projections (q, k, v, out) and the feed-forward layers of every spatial and temporal
transformer block. The adapter is injected with ``peft.inject_adapter_in_model`` and merged into a
plain state dict for export, so ``DragNUWASVDUNet.from_pretrained`` loads the result without peft.
"""

from __future__ import annotations

import torch

#: Module names LoRA wraps (regex, full match): attention q/k/v/out and both feed-forward linears
#: (``ff`` and the temporal blocks' ``ff_in``) in every transformer block. Nothing under ``processor``
#: (the text adapter's own layers, dragnuwa.svd.text) matches.
TARGET_MODULES = r".*\.(attn1|attn2)\.(to_q|to_k|to_v|to_out\.0)|.*\.(ff|ff_in)\.net\.(0\.proj|2)"
ADAPTER = "default"


def add_lora(unet: torch.nn.Module, rank: int, alpha: float | None = None) -> list[str]:
    """Inject LoRA of ``rank`` (scale ``alpha / rank``; alpha defaults to rank) into ``unet`` in place.

    peft marks only the adapter trainable (every other parameter gets ``requires_grad=False``), so
    call this before choosing further trained modules. Returns the wrapped module names."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha or rank, target_modules=TARGET_MODULES, lora_dropout=0.0,
                        init_lora_weights=True)
    inject_adapter_in_model(config, unet, adapter_name=ADAPTER)
    return lora_modules(unet)


def lora_modules(unet: torch.nn.Module) -> list[str]:
    from peft.tuners.lora import LoraLayer

    return [name for name, m in unet.named_modules() if isinstance(m, LoraLayer)]


def merged_state_dict(unet: torch.nn.Module, replace: dict[str, torch.Tensor] | None = None,
                      dtype: torch.dtype | None = None, skip: str = ".processor.") -> dict[str, torch.Tensor]:
    """``unet``'s state dict with every LoRA merged into its base linear, under the plain names.

    ``X.base_layer.weight + scale * X.lora_B.weight @ X.lora_A.weight`` becomes ``X.weight`` (in
    float32, then ``dtype``); ``X.base_layer.bias`` becomes ``X.bias``. ``replace`` overrides
    parameters by their (unmerged) name, e.g. the EMA of the trained ones. Keys containing ``skip``
    (the text adapter's attention processors, saved on their own) are left out."""
    from peft.tuners.lora import LoraLayer

    state = {k: v for k, v in unet.state_dict().items() if skip not in k}
    if replace:
        state.update({k: v for k, v in replace.items() if k in state})
    out: dict[str, torch.Tensor] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        a, b = state.pop(f"{name}.lora_A.{ADAPTER}.weight"), state.pop(f"{name}.lora_B.{ADAPTER}.weight")
        base = state.pop(f"{name}.base_layer.weight")
        scale = module.scaling[ADAPTER]
        out[f"{name}.weight"] = (base.float() + scale * (b.float() @ a.float())).to(base.dtype)
        if f"{name}.base_layer.bias" in state:
            out[f"{name}.bias"] = state.pop(f"{name}.base_layer.bias")
    out.update(state)
    left = [k for k in out if ".lora_" in k or ".base_layer." in k]
    if left:
        raise RuntimeError(f"unmerged LoRA key left in the export: {left[0]}")
    return {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous() for k, v in out.items()}
