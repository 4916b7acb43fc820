"""Checkpoint directories: manifest, atomic ``latest`` pointer, verification, retention.

Layout: ``<run>/checkpoints/step-N/`` holds whatever each owner wrote (learner engine state, reference,
controller state), then ``manifest.json`` (a digest of every file, taken by the process that wrote it: see
``learner/checkpoint_files.py``), written last. ``<run>/checkpoints/latest``
names the newest complete checkpoint and is replaced atomically. A directory without a manifest, or whose
files do not match it, is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from selfplay.learner.checkpoint_files import HASH, file_digest

MANIFEST = "manifest.json"
LATEST = "latest"
FORMAT_VERSION = 2  # 2: xxh3-128 digests taken by each writer; 1: sha256 taken by the driver (still read)
READS = (1, 2)


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the directory and the reason."""


@dataclass(frozen=True)
class CheckpointRef:
    step: int
    path: Path


def checkpoints_root(run_dir: Path) -> Path:
    return run_dir / "checkpoints"


def step_dir(run_dir: Path, step: int) -> Path:
    return checkpoints_root(run_dir) / f"step-{step}"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path, step: int, meta: dict, digests: dict[str, str] | None = None) -> int:
    """Write the manifest last, durably, from the writers' ``digests`` ({relative path: xxh3-128}); a file no
    writer reported is hashed here. Returns how many were."""
    digests = dict(digests or {})
    files, hashed_here = {}, 0
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        rel = str(path.relative_to(directory))
        if rel not in digests:
            digests[rel], hashed_here = file_digest(path), hashed_here + 1
        files[rel] = digests[rel]
    manifest = {"format": FORMAT_VERSION, "hash": HASH, "step": step, "created": time.time(), "files": files,
                "meta": meta}
    tmp = directory / (MANIFEST + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, directory / MANIFEST)
    _fsync_dir(directory)
    return hashed_here


def point_latest(run_dir: Path, step: int) -> None:
    root = checkpoints_root(run_dir)
    tmp = root / (LATEST + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(f"step-{step}\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / LATEST)
    _fsync_dir(root)


def read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory} is incomplete (no {MANIFEST}): it was being written when the run stopped")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise CheckpointError(f"{path} is not valid JSON") from None
    if manifest.get("format") not in READS:
        raise CheckpointError(f"{path} has format {manifest.get('format')}, this selfplay reads "
                              f"{', '.join(map(str, READS))}")
    return manifest


def verify(directory: Path) -> dict:
    """The manifest, after checking that every listed file exists and matches its checksum (each file read
    once)."""
    manifest = read_manifest(directory)
    digest_of = sha256_file if manifest["format"] == 1 else file_digest
    for rel, digest in manifest["files"].items():
        path = directory / rel
        if not path.is_file():
            raise CheckpointError(f"{directory}: file {rel} listed in the manifest is missing")
        if digest_of(path) != digest:
            raise CheckpointError(f"{directory}: file {rel} does not match its checksum (corrupted)")
    return manifest


def list_checkpoints(run_dir: Path) -> list[CheckpointRef]:
    """Checkpoint directories by step, newest first (complete or not)."""
    root = checkpoints_root(run_dir)
    refs = []
    if root.is_dir():
        for path in root.iterdir():
            if path.is_dir() and path.name.startswith("step-") and path.name[5:].isdigit():
                refs.append(CheckpointRef(int(path.name[5:]), path))
    return sorted(refs, key=lambda r: r.step, reverse=True)


def latest_pointer(run_dir: Path) -> int | None:
    path = checkpoints_root(run_dir) / LATEST
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").strip()
    return int(text[5:]) if text.startswith("step-") and text[5:].isdigit() else None


def find_resumable(run_dir: Path, warn=print) -> tuple[CheckpointRef, dict] | None:
    """The newest verified checkpoint at or below the ``latest`` pointer; each one skipped is reported
    through ``warn`` with its reason. None when the run has no usable checkpoint."""
    pointer = latest_pointer(run_dir)
    for ref in list_checkpoints(run_dir):
        if pointer is not None and ref.step > pointer:
            continue  # written after the last completed pointer update: never trusted
        try:
            return ref, verify(ref.path)
        except CheckpointError as exc:
            warn(f"skipping checkpoint: {exc}")
    return None


def apply_retention(run_dir: Path, keep_last: int, keep_every: int = 0) -> list[Path]:
    """Delete complete checkpoints beyond the newest ``keep_last``, sparing multiples of ``keep_every``.
    Incomplete directories older than the newest complete one are removed too."""
    removed = []
    complete = [r for r in list_checkpoints(run_dir) if (r.path / MANIFEST).is_file()]
    keep = {r.step for r in complete[:keep_last]}
    if keep_every:
        keep |= {r.step for r in complete if r.step % keep_every == 0}
    newest = complete[0].step if complete else None
    for ref in list_checkpoints(run_dir):
        is_complete = (ref.path / MANIFEST).is_file()
        if (is_complete and ref.step not in keep) or (not is_complete and newest is not None and ref.step < newest):
            shutil.rmtree(ref.path, ignore_errors=True)
            removed.append(ref.path)
    return removed
