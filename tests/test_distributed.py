"""A real two-process data-parallel run on CPU (gloo) through accelerate.

Processes are started by torchrun (`python -m torch.distributed.run`); accelerate reads its
environment and runs MULTI_CPU with the gloo backend (`accelerate launch --cpu` starts only one
process on CPU).
"""

import os
import textwrap

import torch

from support import torchrun

SCRIPT = textwrap.dedent('''
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_training import FakeText, TinyData
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA
    from dragnuwa.training.config import TrainConfig
    from dragnuwa.training.loop import train
    from accelerate import PartialState
    torch.manual_seed(0)
    model = DragNUWA(get_preset("tiny"))
    cfg = TrainConfig(model="tiny", steps=3, batch_size=1, lr=1e-2, warmup=1, mixed_precision="no",
                      ckpt_every=100, log_every=1, out_dir={out!r})
    train(cfg, model=model, dataset=TinyData(n=4), text_encoder=FakeText())
    rank = PartialState().process_index
    torch.save(model.state_dict(), {out!r} + f"/rank{{rank}}.pt")
''')


def test_two_ranks_keep_identical_weights(tmp_path):
    script = tmp_path / "ddp.py"
    out = str(tmp_path / "run")
    script.write_text(SCRIPT.format(tests=os.path.dirname(__file__), out=out))
    r = torchrun(script, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    w0 = torch.load(f"{out}/rank0.pt")
    w1 = torch.load(f"{out}/rank1.pt")
    torch.manual_seed(0)
    from dragnuwa.models.config import get_preset
    from dragnuwa.models.dragnuwa import DragNUWA

    init = DragNUWA(get_preset("tiny")).state_dict()
    changed = sum(not torch.equal(w0[k], init[k]) for k in w0)
    assert changed > 10  # training moved the weights ...
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # ... identically on both ranks
