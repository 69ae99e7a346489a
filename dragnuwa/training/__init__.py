"""Adaptive Training: one training loop, stage 1 (dense flow) and stage 2 (sparse tracks)."""
