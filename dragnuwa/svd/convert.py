"""Convert the official DragNUWA 1.5 checkpoint (``drag_nuwa_svd.pth``) into a diffusers folder.

``dragnuwa convert drag_nuwa_svd.pth --out DIR`` writes ``DIR/unet/config.json`` and
``DIR/unet/diffusion_pytorch_model.safetensors``, which ``DragNUWASVDUNet.from_pretrained(DIR,
subfolder="unet")`` loads. The steps:

1. Read the file safely: ``.pth`` with ``torch.load(weights_only=True)`` (a pickle that would run
   code is refused, never run); ``.safetensors`` as it is.
2. Fold the LoRA the official ``Net`` injects into every linear of the UNet:
   ``W + scale * up @ down`` (``X.linear.weight``, ``X.lora_down.weight``, ``X.lora_up.weight``).
3. Rename sgm's ``model.diffusion_model.*`` to diffusers' names (our own mapping; diffusers' SVD
   conversion script sets the wrong ``mix_factor`` for single-layer output blocks), the flow encoder
   and the flow modulation included.
4. Check the stored Gaussian filter (``guassian_filter.weight``, spelled so by the official code)
   against the analytic kernel; it is the flow recipe's, not a UNet weight.
5. Load strictly: an official UNet key with no place, or a parameter left unfilled, is an error
   that names it. ``conditioner.*`` and ``first_stage_model.*`` (OpenCLIP and the VAE) are skipped:
   they come from the Stable Video Diffusion folder.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from dragnuwa.errors import UserError, check_output
from dragnuwa.svd.unet import OFFICIAL_FULL_ARGS, DragNUWASVDUNet, diffusers_config_from_official

PREFIX = "model.diffusion_model."
GAUSSIAN_KEY = "guassian_filter.weight"  # sic: the official Net's attribute name
SKIPPED_PREFIXES = ("conditioner.", "first_stage_model.")
# The official flow recipe's filter: 199 px, sigma 20, not normalised (DragNUWA_net.get_gaussian_kernel).
GAUSSIAN_SIZE, GAUSSIAN_SIGMA = 199, 20.0

# VideoResBlock / VideoResBlock_Embed (sgm) -> SpatioTemporalResBlock (diffusers), by module prefix.
RESBLOCK_NAMES = {
    "in_layers.0": "spatial_res_block.norm1",
    "in_layers.2": "spatial_res_block.conv1",
    "emb_layers.1": "spatial_res_block.time_emb_proj",
    "out_layers.0": "spatial_res_block.norm2",
    "out_layers.3": "spatial_res_block.conv2",
    "skip_connection": "spatial_res_block.conv_shortcut",
    "flow_cond_norm": "spatial_res_block.flow_cond_norm",
    "flow_gamma_spatial": "spatial_res_block.flow_gamma_spatial",
    "flow_gamma_temporal": "spatial_res_block.flow_gamma_temporal",
    "flow_beta_spatial": "spatial_res_block.flow_beta_spatial",
    "flow_beta_temporal": "spatial_res_block.flow_beta_temporal",
    "time_stack.in_layers.0": "temporal_res_block.norm1",
    "time_stack.in_layers.2": "temporal_res_block.conv1",
    "time_stack.emb_layers.1": "temporal_res_block.time_emb_proj",
    "time_stack.out_layers.0": "temporal_res_block.norm2",
    "time_stack.out_layers.3": "temporal_res_block.conv2",
    "time_mixer": "time_mixer",
}
# SpatialVideoTransformer (sgm) -> TransformerSpatioTemporalModel (diffusers). Inside the blocks the
# attention and feed-forward names are the same in both (attn1/attn2.to_q/k/v/out.0, ff.net.0.proj, ...).
TRANSFORMER_NAMES = {
    "norm": "norm",
    "proj_in": "proj_in",
    "proj_out": "proj_out",
    "transformer_blocks": "transformer_blocks",
    "time_stack": "temporal_transformer_blocks",
    "time_pos_embed.0": "time_pos_embed.linear_1",
    "time_pos_embed.2": "time_pos_embed.linear_2",
    "time_mixer": "time_mixer",
}
TOP_NAMES = {
    "time_embed.0": "time_embedding.linear_1",
    "time_embed.2": "time_embedding.linear_2",
    "label_emb.0.0": "add_embedding.linear_1",
    "label_emb.0.2": "add_embedding.linear_2",
    "input_blocks.0.0": "conv_in",
    "out.0": "conv_norm_out",
    "out.2": "conv_out",
}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


# --------------------------------------------------------------------------- reading


def read_checkpoint(src: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an official checkpoint file, read without running any code it might hold."""
    src = Path(src)
    if not src.is_file():
        raise UserError(f"checkpoint {src} does not exist" if not src.exists() else f"checkpoint {src} is not a file")
    if src.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data: Any = load_file(src)
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise UserError(f"cannot read {src}: not a safetensors file, or truncated ({_first_line(e)})") from None
    else:
        data = _torch_load(src)
    for _ in range(3):  # training wrappers: {"state_dict": ...} (Lightning), {"module": ...} (DeepSpeed)
        if isinstance(data, Mapping) and not any(str(k).startswith(PREFIX) for k in data):
            inner = next((data[k] for k in ("state_dict", "module", "model") if isinstance(data.get(k), Mapping)), None)
            if inner is None:
                break
            data = inner
    if not isinstance(data, Mapping):
        raise UserError(f"{src} is not a DragNUWA checkpoint: it holds a {type(data).__name__}, not a state dict")
    sd = {str(k): v for k, v in data.items()}
    if not any(k.startswith(PREFIX) for k in sd) and any(k.startswith("module." + PREFIX) for k in sd):
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    if not any(k.startswith(PREFIX) for k in sd):
        raise UserError(f"{src} is not a DragNUWA checkpoint: it has no {PREFIX}* keys")
    if not any(k.startswith(PREFIX + "flow_blocks.") for k in sd):
        raise UserError(f"{src} is not a DragNUWA checkpoint: its UNet has no flow encoder ({PREFIX}flow_blocks.*)")
    bad = next((k for k, v in sd.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise UserError(f"{src}: entry {bad} is a {type(sd[bad]).__name__}, not a tensor")
    return sd


def _torch_load(src: Path) -> Any:
    def load(mmap: bool):
        # weights_only: tensors and plain containers only; a pickle that would call anything is refused
        # by torch's restricted unpickler before it runs.
        return torch.load(src, map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            return load(mmap=True)  # the full checkpoint is ~10 GB: map it rather than read it
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return load(mmap=False)  # the legacy (non-zip) format cannot be mapped
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise UserError(f"refusing to load {src}: it holds Python objects other than tensors, which could run "
                            f"code (read with weights_only; nothing was run)") from None
        raise UserError(f"cannot read {src}: not a PyTorch checkpoint ({_first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - any file at all may be given; torch's unpickler fails in many ways
        raise UserError(f"cannot read {src}: not a PyTorch checkpoint, or truncated "
                        f"({type(e).__name__}: {_first_line(e)})") from None


# --------------------------------------------------------------------------- LoRA and the Gaussian filter


def merge_lora(sd: Mapping[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Fold every LoRA-wrapped linear into a plain one: ``X.weight = X.linear.weight + scale *
    X.lora_up.weight @ X.lora_down.weight`` (computed in float64, stored in the linear's dtype),
    ``X.bias = X.linear.bias``."""
    out: dict[str, torch.Tensor] = {}
    bases = {k[: -len(".lora_down.weight")] for k in sd if k.endswith(".lora_down.weight")}
    bases |= {k[: -len(".lora_up.weight")] for k in sd if k.endswith(".lora_up.weight")}
    for base in sorted(bases):
        parts = {p: sd.get(f"{base}.{p}.weight") for p in ("linear", "lora_down", "lora_up")}
        missing = [p for p, t in parts.items() if t is None]
        if missing:
            raise UserError(f"LoRA-wrapped linear {base} lacks {', '.join(f'{base}.{p}.weight' for p in missing)}")
        w, down, up = parts["linear"], parts["lora_down"], parts["lora_up"]
        if up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0] or (up.shape[0], down.shape[1]) != tuple(w.shape):
            raise UserError(f"LoRA of {base}: shapes {tuple(w.shape)}, up {tuple(up.shape)}, down {tuple(down.shape)} "
                            f"do not fit")
        merged = w.double() + scale * (up.double() @ down.double())
        out[f"{base}.weight"] = merged.to(w.dtype)
        bias = sd.get(f"{base}.linear.bias")
        if bias is not None:
            out[f"{base}.bias"] = bias
    consumed = {f"{b}.{p}.weight" for b in bases for p in ("linear", "lora_down", "lora_up")}
    consumed |= {f"{b}.linear.bias" for b in bases}
    for k, v in sd.items():
        if k in consumed:
            continue
        if ".linear." in k:
            raise UserError(f"{k} looks LoRA-wrapped but has no lora_down/lora_up beside it")
        out[k] = v
    return out


def analytic_gaussian(size: int = GAUSSIAN_SIZE, sigma: float = GAUSSIAN_SIGMA) -> torch.Tensor:
    """The official unnormalised kernel ``exp(-((i-c)^2 + (j-c)^2) / (2 sigma^2))``, c = (size-1)/2."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))


def check_gaussian(weight: torch.Tensor, tol: float = 1e-5) -> None:
    """Refuse a stored flow filter that is not the official kernel (one per flow channel)."""
    expected = analytic_gaussian()
    if weight.ndim != 4 or tuple(weight.shape[1:]) != (1, GAUSSIAN_SIZE, GAUSSIAN_SIZE):
        raise UserError(f"{GAUSSIAN_KEY} has shape {tuple(weight.shape)}, not the official [2, 1, 199, 199]")
    err = (weight.double() - expected).abs().max().item()
    if not err <= tol:
        raise UserError(f"{GAUSSIAN_KEY} differs from the official Gaussian kernel (199 px, sigma 20) by {err:.3g}")


# --------------------------------------------------------------------------- names


class _Layout:
    """Where each official ``input_blocks.i`` / ``output_blocks.k`` lands in diffusers' blocks."""

    def __init__(self, config: Mapping[str, Any]):
        levels = len(config["block_out_channels"])
        n = config["layers_per_block"]
        attn = [t.startswith("CrossAttn") for t in config["down_block_types"]]
        self.inputs: dict[int, str] = {}
        i = 1
        for level in range(levels):
            for j in range(n):
                self.inputs[i] = f"down_blocks.{level}:{j}"
                i += 1
            if level != levels - 1:
                self.inputs[i] = f"down_blocks.{level}:down"
                i += 1
        self.outputs: dict[int, tuple[str, int, bool, bool]] = {}
        k = 0
        for u in range(levels):
            level = levels - 1 - u
            for j in range(n + 1):
                self.outputs[k] = (f"up_blocks.{u}", j, attn[level], level != 0 and j == n)
                k += 1


def _by_prefix(rest: str, names: Mapping[str, str]) -> str | None:
    for src in sorted(names, key=len, reverse=True):
        if rest.startswith(src + "."):
            return names[src] + rest[len(src):]
    return None


def map_key(key: str, layout: _Layout) -> str | None:
    """The diffusers name of one official UNet key (without ``model.diffusion_model.``), or None."""
    top = _by_prefix(key, TOP_NAMES)
    if top is not None:
        return top
    parts = key.split(".")
    if parts[0] == "middle_block" and len(parts) > 2 and parts[1].isdigit():
        layer, rest = int(parts[1]), ".".join(parts[2:])
        if layer in (0, 2):
            inner = _by_prefix(rest, RESBLOCK_NAMES)
            return f"mid_block.resnets.{layer // 2}.{inner}" if inner else None
        if layer == 1:
            inner = _by_prefix(rest, TRANSFORMER_NAMES)
            return f"mid_block.attentions.0.{inner}" if inner else None
        return None
    if len(parts) < 4 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    idx, layer, rest = int(parts[1]), int(parts[2]), ".".join(parts[3:])
    if parts[0] == "flow_blocks":
        # Downsample's conv is `.op` in sgm, a plain conv here.
        rest = rest.removeprefix("op.")
        return f"flow_encoder.stages.{idx}.{layer}.{rest}"
    if parts[0] == "input_blocks" and idx in layout.inputs:
        block, where = layout.inputs[idx].split(":")
        if where == "down":
            return f"{block}.downsamplers.0.conv.{rest.removeprefix('op.')}" if layer == 0 else None
        inner = _by_prefix(rest, RESBLOCK_NAMES if layer == 0 else TRANSFORMER_NAMES) if layer in (0, 1) else None
        kind = "resnets" if layer == 0 else "attentions"
        return f"{block}.{kind}.{where}.{inner}" if inner else None
    if parts[0] == "output_blocks" and idx in layout.outputs:
        block, j, has_attn, has_up = layout.outputs[idx]
        if layer == 0:
            inner = _by_prefix(rest, RESBLOCK_NAMES)
            return f"{block}.resnets.{j}.{inner}" if inner else None
        if layer == 1 and has_attn:
            inner = _by_prefix(rest, TRANSFORMER_NAMES)
            return f"{block}.attentions.{j}.{inner}" if inner else None
        if has_up and layer == (2 if has_attn else 1):
            return f"{block}.upsamplers.0.{rest}"
    return None


# --------------------------------------------------------------------------- conversion


def load_official_args(config: str | os.PathLike | Mapping[str, Any] | None) -> tuple[dict[str, Any], float]:
    """(``VideoUNet_flow`` arguments, LoRA scale) from a JSON file or dict: either the arguments
    themselves or a fixture-style ``{"unet_constructor_args": ..., "lora": {"scale": ...}}``.
    None: the full-size DragNUWA 1.5 UNet, LoRA scale 1."""
    if config is None:
        return dict(OFFICIAL_FULL_ARGS), 1.0
    if not isinstance(config, Mapping):
        path = Path(config)
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"cannot read the UNet config {path}: {_first_line(e)}") from None
        if not isinstance(config, Mapping):
            raise UserError(f"UNet config {path} is not a JSON object")
    args = config.get("unet_constructor_args", config)
    lora = config.get("lora") or {}
    scale = float(lora.get("scale", config.get("lora_scale", 1.0))) if isinstance(lora, Mapping) else 1.0
    return dict(args), scale


def convert_state_dict(official: Mapping[str, torch.Tensor], unet_args: Mapping[str, Any] | None = None,
                       lora_scale: float = 1.0, dtype: torch.dtype | None = None,
                       ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(diffusers config, diffusers state dict) from an official ``Net`` state dict, checked strictly
    against ``DragNUWASVDUNet`` built on the meta device. ``dtype``: cast the floating-point tensors
    as they are converted (the full checkpoint is large; this avoids a second full copy)."""
    try:
        config = diffusers_config_from_official(unet_args or OFFICIAL_FULL_ARGS)
    except ValueError as e:
        raise UserError(f"UNet config: {e}") from None
    if GAUSSIAN_KEY in official:
        check_gaussian(official[GAUSSIAN_KEY])
    others = [k for k in official if not k.startswith(PREFIX) and k != GAUSSIAN_KEY
              and not k.startswith(SKIPPED_PREFIXES)]
    if others:
        raise UserError(f"unexpected key {others[0]} in the checkpoint ({len(others)} outside {PREFIX}*, "
                        f"conditioner.*, first_stage_model.*)")
    unet = merge_lora({k[len(PREFIX):]: v for k, v in official.items() if k.startswith(PREFIX)}, lora_scale)
    layout = _Layout(config)
    converted: dict[str, torch.Tensor] = {}
    for key, value in unet.items():
        name = map_key(key, layout)
        if name is None:
            raise UserError(f"official key {PREFIX}{key} has no place in the diffusers UNet")
        if name in converted:
            raise UserError(f"official key {PREFIX}{key} maps onto {name} twice")
        converted[name] = value.to(dtype) if dtype is not None and value.is_floating_point() else value
    with torch.device("meta"):
        model = DragNUWASVDUNet(**config)
    expected = model.state_dict()
    for name, value in converted.items():
        if name not in expected:
            raise UserError(f"converted key {name} is not a parameter of DragNUWASVDUNet")
        if tuple(value.shape) != tuple(expected[name].shape):
            raise UserError(f"{name}: the checkpoint has shape {tuple(value.shape)}, the UNet config "
                            f"{tuple(expected[name].shape)} (does --config describe this checkpoint?)")
    unfilled = [k for k in expected if k not in converted]
    if unfilled:
        raise UserError(f"UNet parameter {unfilled[0]} is left unfilled by the checkpoint ({len(unfilled)} in all)")
    return dict(model.config), converted


def convert_checkpoint(src: str | os.PathLike, out_dir: str | os.PathLike,
                       config: str | os.PathLike | Mapping[str, Any] | None = None, fp16: bool = False) -> Path:
    """Convert the official checkpoint ``src`` into the diffusers folder ``out_dir`` (``unet/``).

    ``config``: the official ``VideoUNet_flow`` arguments (a JSON file or dict; default the full-size
    DragNUWA 1.5 UNet). ``fp16`` stores float16 weights (half the size). The ``unet`` folder is
    written atomically and replaces an earlier one. Returns ``out_dir``.
    """
    src, out_dir = Path(src), Path(out_dir)
    # The whole OUT/unet folder is replaced: no file the run reads may be it or lie in it.
    unet = (out_dir / "unet").resolve()
    for what, path in (("checkpoint", src), ("--config", config if isinstance(config, (str, os.PathLike)) else None)):
        if path is not None and (Path(path).resolve() == out_dir.resolve() or Path(path).resolve().is_relative_to(unet)):
            raise UserError(f"--out {out_dir} would overwrite the input {what} {path}")
    check_output(out_dir, folder=True, what="output folder")
    unet_args, lora_scale = load_official_args(config)
    official = read_checkpoint(src)
    model_config, state = convert_state_dict(official, unet_args, lora_scale, torch.float16 if fp16 else None)
    _write_unet_folder(out_dir, model_config, state)
    return out_dir


def _write_unet_folder(out_dir: Path, model_config: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / "unet"
    tmp = Path(tempfile.mkdtemp(prefix=".unet.tmp.", dir=out_dir))
    old = None
    try:
        config = {k: v for k, v in model_config.items() if not k.startswith("_")}
        import diffusers

        config = {"_class_name": DragNUWASVDUNet.__name__, "_diffusers_version": diffusers.__version__, **config}
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=list) + "\n")
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / "diffusion_pytorch_model.safetensors"),
                  metadata={"format": "pt"})
        # mkdtemp makes 0700 and safetensors writes 0600: give them a plain mkdir/open's permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=".unet.old.", dir=out_dir))
            os.replace(final, old / "unet")
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "unet").exists() and not final.exists():
            os.replace(old / "unet", final)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
