"""Text for DragNUWA on SVD: the paper's "what" beside the image's "where" and the drag's "how".

DragNUWA (arXiv 2308.08089, Sec. 3.3) fuses text tokens through cross-attention; DragNUWA 1.5 on
SVD dropped text (SVD's cross-attention sees one CLIP image token). This adapter brings it back
without disturbing a model trained without it:

- a ``TextProjection`` (LayerNorm + Linear) maps text tokens (the bundled MiniLM, 384-d, or a CLIP
  text encoder) to the UNet's cross-attention width; padding tokens become exactly-zero rows;
- the projected tokens ride behind the image token in ``encoder_hidden_states``
  (``[B, 1 + L, D]``), so they flow through diffusers' blocks (and gradient checkpointing) as data;
- each spatial cross-attention gets a decoupled text branch (IP-Adapter style, Ye et al. 2023,
  arXiv 2308.06721): its own keys/values over the text tokens and a ZERO-initialised output
  projection, added to the unchanged image attention. Appending tokens to the image attention's
  softmax instead would not be a no-op (extra keys dilute the image token's weight); the decoupled
  branch is exactly zero until trained, and rows without text (an empty prompt, dropped text) add
  exactly zero at any time. The temporal cross-attention keeps attending to the image token only.

Guidance with separate image, text and trajectory scales: :func:`combine_guidance`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dragnuwa.errors import UserError, atomic_path, atomic_write_text

TEXT_FOLDER = "text_adapter"
WEIGHTS = "diffusion_pytorch_model.safetensors"
N_IMAGE_TOKENS = 1  # SVD's CLIP image embedding is one token


class TextProjection(nn.Module):
    """Text tokens ``[B, L, text_dim]`` + mask ``[B, L]`` -> ``[B, L, cross_dim]``, padding rows zero."""

    def __init__(self, text_dim: int, cross_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(text_dim)
        self.proj = nn.Linear(text_dim, cross_dim)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(tokens)) * mask[..., None].to(self.proj.weight.dtype)


class TextCrossAttnProcessor(nn.Module):
    """A spatial cross-attention (``attn2``) with a decoupled, zero-initialised text branch.

    ``encoder_hidden_states`` is ``[N, 1 + L, D]``: the image token, then the projected text tokens
    (zero rows = padding). The image part goes through ``base`` (diffusers' own processor) exactly
    as before; the text branch ``to_out_text(softmax(q k_t^T) v_t)`` is added to it."""

    def __init__(self, base, cross_dim: int, inner_dim: int, query_dim: int, init_k=None, init_v=None):
        super().__init__()
        self.base = base
        self.to_k_text = nn.Linear(cross_dim, inner_dim, bias=False)
        self.to_v_text = nn.Linear(cross_dim, inner_dim, bias=False)
        self.to_out_text = nn.Linear(inner_dim, query_dim)
        with torch.no_grad():
            # IP-Adapter starts its text keys/values from the layer's image ones; the zero output
            # projection keeps the model unchanged until trained.
            if init_k is not None:
                self.to_k_text.weight.copy_(init_k)
            if init_v is not None:
                self.to_v_text.weight.copy_(init_v)
            nn.init.zeros_(self.to_out_text.weight)
            nn.init.zeros_(self.to_out_text.bias)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] <= N_IMAGE_TOKENS:
            return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)
        image = encoder_hidden_states[:, :N_IMAGE_TOKENS].contiguous()
        text = encoder_hidden_states[:, N_IMAGE_TOKENS:]
        out = self.base(attn, hidden_states, image, attention_mask, temb, **kw)
        n, length = text.shape[:2]
        heads = attn.heads
        q = attn.to_q(hidden_states)
        head_dim = q.shape[-1] // heads
        q = q.view(n, -1, heads, head_dim).transpose(1, 2)
        k = self.to_k_text(text).view(n, length, heads, head_dim).transpose(1, 2)
        v = self.to_v_text(text).view(n, length, heads, head_dim).transpose(1, 2)
        valid = text.abs().amax(-1) > 0  # [n, L]; padding and dropped prompts are zero rows
        has_text = valid.any(-1)
        # A row with no text attends to everything (avoids an all-masked softmax) and is zeroed after.
        mask = (valid | ~has_text[:, None])[:, None, None, :]
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        o = self.to_out_text(o.transpose(1, 2).reshape(n, -1, heads * head_dim))
        return out + (o * has_text[:, None, None].to(o.dtype)).to(out.dtype)


class ImageTokenProcessor:
    """A temporal cross-attention that keeps reading the image token only (text rides behind it)."""

    def __init__(self, base):
        self.base = base

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is not None and encoder_hidden_states.shape[1] > N_IMAGE_TOKENS:
            # contiguous(): a copy of the one token, so the broadcast [N, 1 + L, D] context is not kept alive.
            encoder_hidden_states = encoder_hidden_states[:, :N_IMAGE_TOKENS].contiguous()
        return self.base(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kw)


def _cross_attentions(unet):
    """(name, Attention, is_spatial) for every cross-attention of the UNet."""
    for name, module in unet.named_modules():
        if name.endswith(".attn2") and hasattr(module, "processor"):
            yield name, module, ".temporal_transformer_blocks." not in name


def install_text_adapter(unet: nn.Module, text_dim: int) -> TextProjection:
    """Add the text branch to every spatial cross-attention of ``unet`` (in place) and the
    image-only guard to every temporal one -> the (fresh) ``TextProjection``. At step 0 the UNet
    computes exactly what it did before."""
    cross_dim = unet.config.cross_attention_dim
    for _, attn, spatial in _cross_attentions(unet):
        base = attn.processor
        if isinstance(base, (TextCrossAttnProcessor, ImageTokenProcessor)):
            raise ValueError("the text adapter is already installed")
        if spatial:
            inner, query_dim = attn.to_q.out_features, attn.to_out[0].out_features
            k = getattr(attn.to_k, "base_layer", attn.to_k).weight
            v = getattr(attn.to_v, "base_layer", attn.to_v).weight
            proc = TextCrossAttnProcessor(base, cross_dim, inner, query_dim, k, v).to(k.device, k.dtype)
        else:
            proc = ImageTokenProcessor(base)
        attn.set_processor(proc)
    param = next(unet.parameters())
    return TextProjection(text_dim, cross_dim).to(param.device)


def text_parameters(unet: nn.Module) -> dict[str, nn.Parameter]:
    """The text branches' parameters, by their name in ``unet``."""
    return {k: p for k, p in unet.named_parameters() if ".processor." in k}


def hidden_states_with_text(image_embeds: torch.Tensor, text: torch.Tensor | None) -> torch.Tensor:
    """``encoder_hidden_states`` = the image token ``[B, 1, D]`` then the projected text ``[B, L, D]``."""
    if text is None:
        return image_embeds
    return torch.cat([image_embeds, text.to(image_embeds.dtype)], dim=1)


def save_text_adapter(folder: str | Path, unet: nn.Module, projection: TextProjection, encoder: str,
                      params: dict[str, torch.Tensor] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write ``folder/text_adapter/`` (config.json + safetensors): the projection (``proj.*``) and the
    branches (``unet.*``). ``params`` overrides values by name (the EMA)."""
    from safetensors.torch import save_file

    out = Path(folder) / TEXT_FOLDER
    out.mkdir(parents=True, exist_ok=True)
    state = {f"unet.{k}": p.detach() for k, p in text_parameters(unet).items()}
    state.update({f"proj.{k}": p.detach() for k, p in projection.named_parameters()})
    for k in list(state):
        if params and k in params:
            state[k] = params[k]
    state = {k: (v.to(dtype) if dtype else v).contiguous().cpu() for k, v in state.items()}
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    config = {"encoder": encoder, "text_dim": projection.norm.normalized_shape[0],
              "cross_attention_dim": projection.proj.out_features, "n_image_tokens": N_IMAGE_TOKENS}
    atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    return out


def load_text_adapter(folder: str | Path, unet: nn.Module) -> tuple[TextProjection, str] | None:
    """Install the text adapter saved in ``folder/text_adapter/`` into ``unet`` -> (projection, the
    text encoder's name), or None when the folder has no text adapter (a model without text)."""
    from safetensors.torch import load_file

    src = Path(folder) / TEXT_FOLDER
    if not (src / "config.json").is_file():
        return None
    config = json.loads((src / "config.json").read_text())
    projection = install_text_adapter(unet, int(config["text_dim"]))
    state = load_file(str(src / WEIGHTS))
    named = dict(text_parameters(unet))
    named.update({f"proj.{k}": p for k, p in projection.named_parameters()})
    missing = sorted(set(named) - {k.removeprefix("unet.") if k.startswith("unet.") else k for k in state})
    if missing:
        raise UserError(f"{src} does not fit this UNet: no weights for {missing[0]}")
    with torch.no_grad():
        for k, v in state.items():
            name = k.removeprefix("unet.") if k.startswith("unet.") else k
            if name not in named:
                raise UserError(f"{src} does not fit this UNet: unexpected weight {k}")
            named[name].copy_(v)
    return projection, str(config["encoder"])


class CLIPTextTokens:
    """A CLIP text encoder named by the user (a local folder or a cached hub id, loaded offline):
    ``encode(prompts) -> (tokens [B, 77, D], mask [B, 77])``, with the same contract as the bundled
    ``dragnuwa.models.text_encoder.TextEncoder`` (an empty prompt gives zeros and mask False)."""

    def __init__(self, name: str):
        from transformers import CLIPTextModel, CLIPTokenizer

        try:
            sub = "text_encoder" if (Path(name) / "text_encoder").is_dir() else ""
            self.tokenizer = CLIPTokenizer.from_pretrained(name, subfolder="tokenizer" if sub else "")
            self.model = CLIPTextModel.from_pretrained(name, subfolder=sub).eval().requires_grad_(False)
        except (OSError, ValueError) as e:
            raise UserError(f"cannot load a CLIP text encoder from {name!r} (download it first; offline here): "
                            f"{str(e).splitlines()[0][:120]}") from None
        self.dim = self.model.config.hidden_size
        self.device = torch.device("cpu")

    def to(self, device):
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(list(prompts), padding="max_length", truncation=True,
                             max_length=self.tokenizer.model_max_length, return_tensors="pt").to(self.device)
        mask = enc["attention_mask"].bool() & torch.tensor([bool(p.strip()) for p in prompts],
                                                           device=self.device)[:, None]
        tokens = self.model(**enc).last_hidden_state.float() * mask[..., None]
        return tokens, mask


def text_encoder(name: str):
    """``"minilm"``: the bundled MiniLM (384-d tokens); anything else names a CLIP text encoder."""
    if name == "minilm":
        from dragnuwa.models.text_encoder import shared_text_encoder

        return shared_text_encoder()
    return CLIPTextTokens(name)


def combine_guidance(cond: torch.Tensor, uncond: torch.Tensor, image_scale, no_text: torch.Tensor | None = None,
                     text_scale: float = 1.0, no_traj: torch.Tensor | None = None,
                     traj_scale: float = 1.0) -> torch.Tensor:
    """Classifier-free guidance with separate image, text and trajectory scales.

    ``cond`` = D(image, text, trajectory); ``uncond`` = D(no image, no text, trajectory), the
    official DragNUWA 1.5 unconditional pass (its flow is shared by both halves); ``no_text`` =
    D(image, no text, trajectory); ``no_traj`` = D(image, text, no trajectory):

        D = uncond + s_img (cond - uncond) + (s_text - 1)(cond - no_text) + (s_traj - 1)(cond - no_traj)

    ``image_scale`` may be per frame (``[T]`` or ``[1, T, 1, 1, 1]``, SVD's linear ramp 1 -> 2.5).
    With text and trajectory scales 1 it is the official guidance and needs no extra pass; each
    scale != 1 costs one pass more. A pipeline batches the passes it needs."""
    s = torch.as_tensor(image_scale, dtype=cond.dtype, device=cond.device)
    if s.ndim == 1:
        s = s.view(1, -1, *([1] * (cond.ndim - 2)))
    out = uncond + s * (cond - uncond)
    if text_scale != 1.0:
        if no_text is None:
            raise ValueError("text_scale != 1 needs the pass without text (no_text)")
        out = out + (text_scale - 1.0) * (cond - no_text)
    if traj_scale != 1.0:
        if no_traj is None:
            raise ValueError("traj_scale != 1 needs the pass without the trajectory (no_traj)")
        out = out + (traj_scale - 1.0) * (cond - no_traj)
    return out
