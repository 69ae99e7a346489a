"""No output of a run may overwrite one of its inputs, or another of its outputs.

Every command that writes files calls :func:`check_run_paths` once, before any work, with all the
paths it reads and all the paths it will write, each under the flag the user gave it:

```python
check_run_paths({"--image": image, "--tracks": tracks}, {"--out": out, "--overlay": overlay})
```

Two paths are the same file when both exist and have the same device and inode (as
``os.path.samefile`` compares them: a hard link, a symlink, another spelling of the path, a
case-insensitive file system), or, when they do not exist yet, when their resolved absolute paths
are equal. The check is one rule for every
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


def _identity(path: Path) -> tuple:
    """What makes a file itself: its device and inode when it exists, else its resolved path (a
    file that does not exist yet cannot be one that does)."""
    try:
        st = path.stat()
        return ("inode", st.st_dev, st.st_ino)
    except OSError:  # missing, or unreadable metadata: compare the names
        return ("path", _resolved(path))


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: same inode when both exist, else the same resolved path."""
    return _identity(Path(a)) == _identity(Path(b))


def check_run_paths(inputs: Mapping[str, object], outputs: Mapping[str, object]) -> None:
    """Refuse (``UserError``, one line naming both flags) a run in which an output path is the same
    file as an input, or as another output. ``inputs`` and ``outputs`` map the user's flag (e.g.
    ``"--image"``, ``"--out"``) to a path, a list of paths (``"--variants"`` files), or None.
    Linear in the number of paths (one ``stat`` each), so a dataset's thousands of files are cheap."""
    seen: dict[tuple, tuple[str, Path, bool]] = {}  # identity -> (flag, path, is_input)
    for flag, src in _as_paths(inputs):
        seen.setdefault(_identity(src), (flag, src, True))
    for out_flag, out in _as_paths(outputs):
        key = _identity(out)
        if key in seen:
            flag, other, is_input = seen[key]
            if is_input:
                raise UserError(f"{out_flag} {out} is the same file as {flag} {other}: writing it would destroy "
                                f"the input; choose another {out_flag}")
            raise UserError(f"{flag} {other} and {out_flag} {out} name the same file: one output would "
                            f"overwrite the other; give each its own path")
        seen[key] = (out_flag, out, False)


def variant_paths(out: PathLike, seeds: Iterable[int]) -> list[Path]:
    """The files ``generate --variants`` writes beside ``out``, one per seed: ``<stem>_seed<S><suffix>``."""
    out = Path(out)
    return [out.with_name(f"{out.stem}_seed{s}{out.suffix}") for s in seeds]
