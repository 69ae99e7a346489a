"""A real two-process data-parallel run on CPU (gloo) through accelerate.

Processes are started by torchrun (`python -m torch.distributed.run`); accelerate reads its
environment and runs MULTI_CPU with the gloo backend (`accelerate launch --cpu` starts only one
process on CPU).
"""

import os
import subprocess
import sys
import textwrap

import torch

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
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                        "--master_addr", "127.0.0.1", "--master_port", str(port), str(script)],
                       capture_output=True, text=True, env=env, timeout=300)
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
