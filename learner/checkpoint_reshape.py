"""Resuming onto another number of learner ranks: DeepSpeed's engine state is saved per rank, so a checkpoint of
N data-parallel ranks is reshaped for M through DeepSpeed's universal checkpoint (``ds_to_universal``, loaded with
``checkpoint.load_universal``).

ZeRO stage 0 needs none of it: the whole optimizer state sits in the one model-state file every rank loads. ZeRO
1-3 partition the optimizer (and at 3 the weights) over the ranks that wrote them; the universal form holds each
parameter whole (fp32 weights and Adam moments), and DeepSpeed slices it for the ranks that load it.
"""

from __future__ import annotations

import re
from argparse import Namespace
from pathlib import Path

_OPTIM_FILE = re.compile(r"(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_\d+_optim_states\.pt")


def saved_data_parallel_size(state_dir: Path) -> int | None:
    """How many data-parallel ranks wrote the ZeRO state under ``state_dir`` (None: no ZeRO files, stage 0)."""
    ranks = {int(m.group(1)) for f in Path(state_dir).iterdir() if (m := _OPTIM_FILE.fullmatch(f.name))}
    return len(ranks) or None


def to_universal(state_dir: Path, out_dir: Path, workers: int = 1) -> Path:
    """Convert the ZeRO checkpoint in ``state_dir`` into DeepSpeed's universal form in ``out_dir`` (once: a
    finished conversion is reused; an unfinished one, without its marker, is redone)."""
    import shutil

    from deepspeed.checkpoint import ds_to_universal

    done = out_dir / "converted"
    if done.is_file():
        return out_dir
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    ds_to_universal.main(Namespace(input_folder=str(state_dir), output_folder=str(out_dir),
                                   num_extract_workers=workers, num_merge_workers=workers, keep_temp_folder=False,
                                   strict=True, inject_missing_state=True))  # checkpoints of earlier versions
    done.write_text("ok\n")
    return out_dir
