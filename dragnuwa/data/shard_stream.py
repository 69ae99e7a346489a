"""Training batches streamed from `dragnuwa prepare` shards (``data: {shards: "DIR/*.tar"}``).

Adaptive Training (paper Sec. 3.4) as for the procedural clips: stage 1 takes the stored dense flow
(or, for shards prepared with ``--no-flow``, flow recomputed on the decoded frames), stage 2 draws
1..N of the clip's candidate tracks, motion-weighted, spread by the Gaussian (paper Sec. 3.2;
``dataset.maps_from_candidates``).

How the stream is split and ordered, so that no sample is read twice in a pass and a resumed run
continues where it stopped:
- every data loader process of every rank is a *slot* (``world x max(1, workers)`` of them). Each
  pass over the corpus (an epoch) shuffles the shard order with ``(seed, epoch)``; slot s takes the
  shards at positions s, s + slots, ... (with fewer shards than slots, every slot reads every shard
  and keeps every slots-th sample). A shard's samples are shuffled with ``(seed, epoch, shard)``.
- micro-batch k of a rank comes from its slot ``k mod workers``, so the order is a function of
  (seed, k, rank) for given ``world`` and ``workers``, and a resume skips the samples already used
  by counting (whole shards are skipped unread, via the manifest's counts).
- ``synthetic_fraction`` p mixes procedural clips in: sample n of a slot is procedural when
  floor((n + 1) p) > floor(n p), so the share is exact and the count is known at any point.
"""

from __future__ import annotations

import json
import math
from typing import Iterator

import numpy as np
import torch

from dragnuwa.errors import UserError


class ShardClips(torch.utils.data.IterableDataset):
    """Training micro-batches ``{"video", "text", "maps", "keys"}`` from shards (module docstring)."""

    def __init__(self, pattern: str, frames: int = 14, size: tuple[int, int] = (64, 64), stage: int = 1,
                 max_tracks: int = 8, seed: int = 0, synthetic=None, synthetic_fraction: float = 0.0):
        from dragnuwa.data.shards import expand_shards, raw_samples, shard_counts

        self.paths = expand_shards(pattern)
        self.counts = shard_counts(self.paths)
        if sum(self.counts) == 0:
            raise UserError(f"the shards {pattern} hold no samples")
        first = next(raw_samples(self.paths[int(np.argmax(self.counts))]))
        meta = json.loads(first["json"])
        if meta["frames"] < frames:
            raise UserError(f"the shards hold {meta['frames']}-frame clips; the model needs {frames} "
                            f"(prepare with --frames {frames} or more)")
        self.has_flow = "flow.npy" in first
        self.frames, self.size, self.stage, self.max_tracks, self.seed = frames, tuple(size), stage, max_tracks, seed
        self.synthetic, self.fraction = synthetic, synthetic_fraction
        # set per data loader process by micro_batches
        self.batch_size, self.first, self.last, self.rank, self.world, self.workers = 1, 0, 0, 0, 1, 0

    # ------------------------------------------------------------------ one slot's samples

    def _slot_shards(self, epoch: int, slot: int, slots: int) -> list[tuple[int, int | None]]:
        """(shard, keep every slots-th sample from this offset or None for all) of one pass, in order."""
        order = np.random.default_rng([self.seed, epoch, 7]).permutation(len(self.paths))
        if len(self.paths) >= slots:
            return [(int(i), None) for i in order[slot::slots]]
        out, seen = [], 0
        for i in order:  # few shards: sample-level split over the whole pass
            out.append((int(i), (slot - seen) % slots))
            seen += self.counts[i]
        return out

    def _mine(self, shard: int, offset: int | None, slots: int) -> int:
        n = self.counts[shard]
        return n if offset is None else len(range(offset, n, slots))

    def slot_samples(self, slot: int, slots: int, skip: int = 0) -> Iterator[tuple[dict, list[int]]]:
        """Raw samples of one slot, pass after pass, after ``skip`` of them (whole shards unread) ->
        (raw sample, [epoch, shard, position])."""
        from dragnuwa.data.shards import raw_samples

        if sum(self.counts) < slots:
            raise UserError(f"{sum(self.counts)} samples cannot feed {slots} data loader processes "
                            "(ranks x workers): prepare more clips or use fewer workers")
        epoch = 0
        while True:
            for shard, offset in self._slot_shards(epoch, slot, slots):
                mine = self._mine(shard, offset, slots)
                if skip >= mine:
                    skip -= mine
                    continue
                raws = list(raw_samples(self.paths[shard]))
                perm = np.random.default_rng([self.seed, epoch, shard, 7]).permutation(len(raws))
                for pos in (perm if offset is None else perm[offset::slots]):
                    if skip:
                        skip -= 1
                        continue
                    yield raws[pos], [epoch, shard, int(pos)]
            epoch += 1

    # ------------------------------------------------------------------ one training item

    def item(self, raw: dict, where: list[int]) -> dict:
        """A raw sample -> ``{"video", "text", "maps", "key"}`` at the model's frames and size."""
        from dragnuwa.data.dataset import make_maps, maps_from_candidates
        from dragnuwa.data.shards import decode_sample
        from dragnuwa.video import fit_image, to_tensor

        s = decode_sample(raw)
        rng = np.random.default_rng([self.seed, *where, 2])
        T, (W, H) = self.frames, self.size
        Tp, Hp, Wp = s["frames"].shape[:3]
        # First pass: the clip's first frames; later passes a window drawn per (sample, pass).
        start = 0 if where[0] == 0 else int(rng.integers(0, Tp - T + 1))
        frames = s["frames"][start:start + T]
        if (Wp, Hp) != (W, H):
            frames = np.stack([fit_image(f, (W, H), "stretch")[0] for f in frames])
        if self.stage == 2:
            cands = s["tracks"][:, start:start + T]
            maps = maps_from_candidates(cands, T, (Wp, Hp), (W, H), rng, self.max_tracks)
        elif s["flow"] is not None:  # stored maps [Tp, 2, h, w] -> forward flow of the window [T-1, h, w, 2]
            flow = s["flow"][start + 1:start + T].astype(np.float32).transpose(0, 2, 3, 1)
            maps = make_maps(flow, 1, rng, self.max_tracks, size=(W, H))
        else:  # prepared with --no-flow: recompute at load, at the model's size
            from dragnuwa.flow import video_flow

            maps = make_maps(video_flow(frames, "dis"), 1, rng, self.max_tracks)
        return {"video": to_tensor(frames), "text": s["caption"], "maps": torch.from_numpy(maps), "key": s["key"]}

    # ------------------------------------------------------------------ micro-batches

    def _shard_share(self, n: int) -> int:
        """Of a slot's first n samples, how many come from the shards (the rest are procedural)."""
        return n - math.floor(n * self.fraction)

    def _batches(self, slot_in_rank: int, per_rank: int) -> Iterator[dict]:
        """Micro-batches k in [first, last) with k = slot_in_rank (mod per_rank) of this rank."""
        B, slots = self.batch_size, self.world * per_rank
        slot = self.rank * per_rank + slot_in_rank
        b0 = max(0, -(-(self.first - slot_in_rank) // per_rank))  # first local batch with k >= first
        stream = self.slot_samples(slot, slots, skip=self._shard_share(b0 * B))
        b = b0
        while b * per_rank + slot_in_rank < self.last:
            items = []
            for n in range(b * B, (b + 1) * B):
                if math.floor((n + 1) * self.fraction) > math.floor(n * self.fraction):
                    syn = self.synthetic[(math.floor(n * self.fraction) * slots + slot) % len(self.synthetic)]
                    items.append({**syn, "key": f"synthetic_{n}"})
                else:
                    items.append(self.item(*next(stream)))
            yield {"video": torch.stack([it["video"] for it in items]), "text": [it["text"] for it in items],
                   "maps": torch.stack([it["maps"] for it in items]), "keys": [it["key"] for it in items]}
            b += 1

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        if info is None:
            return self._batches(0, 1)
        import cv2

        cv2.setNumThreads(1)  # one process per core already
        # Worker w makes the batches k = first + w (mod workers): the loader's round robin then hands
        # them out in the order k = first, first + 1, ..., as an uninterrupted run would.
        return self._batches((self.first + info.id) % info.num_workers, info.num_workers)

    def micro_batches(self, batch_size: int, first: int, last: int, rank: int, world: int,
                      workers: int) -> Iterator[dict]:
        """Micro-batches ``first .. last-1`` of ``rank`` (of ``world``), made by ``workers`` processes."""
        self.batch_size, self.first, self.last, self.rank, self.world = batch_size, first, last, rank, world
        if workers == 0:
            yield from self._batches(0, 1)
            return
        # spawn, not fork: a child forked after OpenCV/OpenMP ran threads in this process can deadlock.
        loader = torch.utils.data.DataLoader(self, batch_size=None, num_workers=workers, prefetch_factor=4,
                                             multiprocessing_context="spawn", pin_memory=torch.cuda.is_available())
        yield from loader
