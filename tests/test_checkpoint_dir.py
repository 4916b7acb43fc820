"""Checkpoint directory rules, on directories written by hand (the real writers are tested end to end)."""

import json

import pytest

from orchestration import checkpoint as ckpt


def _write(run_dir, step, complete=True, point=True):
    d = ckpt.step_dir(run_dir, step)
    (d / "engine").mkdir(parents=True)
    (d / "engine" / "state.bin").write_bytes(bytes([step]) * 100)
    (d / "controller.msgpack").write_bytes(b"state-%d" % step)
    if complete:
        ckpt.write_manifest(d, step, {"world_size": 1})
        if point:
            ckpt.point_latest(run_dir, step)
    return d


def test_manifest_lists_every_file_with_its_checksum(tmp_path):
    d = _write(tmp_path, 4)
    manifest = ckpt.verify(d)
    assert manifest["step"] == 4
    assert set(manifest["files"]) == {"engine/state.bin", "controller.msgpack"}
    assert manifest["files"]["controller.msgpack"] == ckpt.sha256_file(d / "controller.msgpack")
    assert ckpt.latest_pointer(tmp_path) == 4


def test_newest_complete_checkpoint_is_chosen(tmp_path):
    _write(tmp_path, 2)
    _write(tmp_path, 4)
    ref, manifest = ckpt.find_resumable(tmp_path)
    assert ref.step == 4 and manifest["step"] == 4


def test_partial_checkpoint_is_never_loaded(tmp_path):
    _write(tmp_path, 2)
    _write(tmp_path, 4, complete=False)  # killed before its manifest
    ref, _ = ckpt.find_resumable(tmp_path)
    assert ref.step == 2


def test_partial_first_checkpoint_without_pointer(tmp_path):
    _write(tmp_path, 3, complete=False)  # killed while writing the run's first checkpoint
    warnings = []
    assert ckpt.find_resumable(tmp_path, warn=warnings.append) is None
    assert "step-3 is incomplete (no manifest.json)" in warnings[0]


def test_checkpoint_newer_than_latest_pointer_is_not_trusted(tmp_path):
    _write(tmp_path, 2)
    _write(tmp_path, 4, point=False)  # killed between the manifest and the pointer update
    ref, _ = ckpt.find_resumable(tmp_path)
    assert ref.step == 2


def test_corrupted_file_falls_back_to_the_previous_checkpoint(tmp_path):
    _write(tmp_path, 2)
    d = _write(tmp_path, 4)
    (d / "engine" / "state.bin").write_bytes(b"\x00" * 100)
    warnings = []
    ref, _ = ckpt.find_resumable(tmp_path, warn=warnings.append)
    assert ref.step == 2
    assert len(warnings) == 1 and "engine/state.bin does not match its checksum" in warnings[0]
    assert "step-4" in warnings[0]


def test_missing_file_and_bad_manifest(tmp_path):
    d = _write(tmp_path, 2)
    (d / "controller.msgpack").unlink()
    with pytest.raises(ckpt.CheckpointError, match="controller.msgpack listed in the manifest is missing"):
        ckpt.verify(d)
    (d / ckpt.MANIFEST).write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        ckpt.verify(d)
    assert ckpt.find_resumable(tmp_path, warn=lambda m: None) is None


def test_retention_keeps_last_n_and_every_mth(tmp_path):
    for step in (5, 10, 15, 20, 25):
        _write(tmp_path, step)
    _write(tmp_path, 3, complete=False)  # an old partial directory is cleaned up too
    ckpt.apply_retention(tmp_path, keep_last=2, keep_every=10)
    assert sorted(r.step for r in ckpt.list_checkpoints(tmp_path)) == [10, 20, 25]


def test_pointer_is_replaced_atomically(tmp_path):
    _write(tmp_path, 2)
    _write(tmp_path, 4)
    root = ckpt.checkpoints_root(tmp_path)
    assert (root / "latest").read_text() == "step-4\n"
    assert not (root / "latest.tmp").exists()
    assert json.loads((ckpt.step_dir(tmp_path, 4) / "manifest.json").read_text())["meta"] == {"world_size": 1}
