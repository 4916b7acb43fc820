"""Which checkpoint files each learner rank wrote, and their digests, taken by the rank that wrote them: at 7B a
checkpoint is ~140 GB, and one process hashing all of it afterwards took minutes; each rank reads back only its own
files, from the page cache they were just written to, in parallel with the other ranks.

The digest is xxh3-128, like the weight pushes': it guards against torn and damaged files, not an adversary.
"""

from __future__ import annotations

import re
from pathlib import Path

import xxhash

_RANK_FILE = re.compile(r"zero_pp_rank_(\d+)_")
HASH = "xxh3_128"


def file_digest(path: Path) -> str:
    h = xxhash.xxh3_128()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(8 << 20):
            h.update(chunk)
    return h.hexdigest()


def engine_files_of(rank: int, engine_dir: Path, tag: str = "state") -> list[Path]:
    """The files of DeepSpeed's engine state written by data-parallel ``rank``: its ZeRO partitions
    (``<tag>/zero_pp_rank_<rank>_...``); rank 0 also writes the model-state files every rank shares and the
    conversion scripts DeepSpeed copies beside the tag (``zero_to_fp32.py``)."""
    files = [f for f in sorted(Path(engine_dir).iterdir()) if f.is_file()] if rank == 0 else []
    for path in sorted((Path(engine_dir) / tag).iterdir()):
        match = _RANK_FILE.search(path.name)
        if path.is_file() and (int(match.group(1)) == rank if match else rank == 0):
            files.append(path)
    return files


def digests(root: Path, files: list[Path]) -> dict[str, str]:
    """{path relative to ``root``: digest} of ``files``."""
    return {str(Path(f).relative_to(root)): file_digest(f) for f in files}
