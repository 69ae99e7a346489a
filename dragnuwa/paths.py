"""No output of a run may overwrite one of its inputs, or another of its outputs.

Every command that writes files calls :func:`check_run_paths` once, before any work, with all the
paths it reads and all the paths it will write, each under the flag the user gave it:

```python
check_run_paths({"--image": image, "--tracks": tracks}, {"--out": out, "--overlay": overlay})
```

Two paths are the same file when both exist and ``os.path.samefile`` says so (the same inode: a
hard link, a symlink, another spelling of the path, a case-insensitive file system), or, when one
does not exist yet, when their resolved absolute paths are equal. The check is one rule for every
flag, not a special case per flag: a new command adopts it by listing its paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from dragnuwa.errors import UserError

PathLike = str | os.PathLike


def _as_paths(named: Mapping[str, object]) -> list[tuple[str, Path]]:
    """``(flag, path)`` pairs for the entries that name files: None, "" and non-paths (arrays, a
    dict of tracks, a loaded model) are skipped; a list or tuple of paths gives one pair each."""
    pairs = []
    for flag, value in named.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, (str, os.PathLike)) and str(v):
                pairs.append((flag, Path(v)))
    return pairs


def _resolved(path: Path) -> str:
    # realpath resolves symlinked folders even when the file itself does not exist yet.
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: same inode when both exist, else the same resolved path."""
    a, b = Path(a), Path(b)
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:  # unreadable metadata: fall back to comparing the names
        pass
    return _resolved(a) == _resolved(b)


def check_run_paths(inputs: Mapping[str, object], outputs: Mapping[str, object]) -> None:
    """Refuse (``UserError``, one line naming both flags) a run in which an output path is the same
    file as an input, or as another output. ``inputs`` and ``outputs`` map the user's flag (e.g.
    ``"--image"``, ``"--out"``) to a path, a list of paths (``"--variants"`` files), or None."""
    ins, outs = _as_paths(inputs), _as_paths(outputs)
    for k, (out_flag, out) in enumerate(outs):
        for in_flag, src in ins:
            if same_file(out, src):
                raise UserError(f"{out_flag} {out} is the same file as {in_flag} {src}: writing it would destroy "
                                f"the input; choose another {out_flag}")
        for other_flag, other in outs[k + 1:]:
            if same_file(out, other):
                raise UserError(f"{out_flag} {out} and {other_flag} {other} name the same file: one output "
                                f"would overwrite the other; give each its own path")


def variant_paths(out: PathLike, seeds: Iterable[int]) -> list[Path]:
    """The files ``generate --variants`` writes beside ``out``, one per seed: ``<stem>_seed<S><suffix>``."""
    out = Path(out)
    return [out.with_name(f"{out.stem}_seed{s}{out.suffix}") for s in seeds]
