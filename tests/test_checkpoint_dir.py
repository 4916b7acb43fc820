"""Checkpoint directory rules, on directories written by hand (the real writers are tested end to end)."""

import json
from pathlib import Path

import pytest

from selfplay.orchestration.run import checkpoints as ckpt


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
    assert manifest["files"]["controller.msgpack"] == ckpt.file_digest(d / "controller.msgpack")
    assert manifest["format"] == 2 and manifest["hash"] == "xxh3_128"
    assert ckpt.latest_pointer(tmp_path) == 4


def test_the_writers_digests_are_taken_and_only_unreported_files_hashed_here(tmp_path):
    d = tmp_path / "step-1"
    (d / "engine").mkdir(parents=True)
    (d / "engine" / "a.pt").write_bytes(b"a" * 10)
    (d / "b.msgpack").write_bytes(b"b")
    reported = {"engine/a.pt": ckpt.file_digest(d / "engine" / "a.pt")}
    assert ckpt.write_manifest(d, 1, {}, digests=dict(reported)) == 1  # b.msgpack: nobody reported it
    assert ckpt.verify(d)["files"] == {**reported, "b.msgpack": ckpt.file_digest(d / "b.msgpack")}
    # a writer's digest is what the manifest holds: a wrong one is caught when the checkpoint is verified
    ckpt.write_manifest(d, 1, {}, digests={"engine/a.pt": "0" * 32})
    with pytest.raises(ckpt.CheckpointError, match="engine/a.pt does not match its checksum"):
        ckpt.verify(d)


def test_a_format_1_manifest_of_an_earlier_version_still_verifies(tmp_path):
    d = _write(tmp_path, 4)
    manifest = json.loads((d / ckpt.MANIFEST).read_text())
    manifest.update(format=1, files={rel: ckpt.sha256_file(d / rel) for rel in manifest["files"]})
    manifest.pop("hash")
    (d / ckpt.MANIFEST).write_text(json.dumps(manifest))
    assert ckpt.verify(d)["step"] == 4
    (d / "controller.msgpack").write_bytes(b"changed")
    with pytest.raises(ckpt.CheckpointError, match="controller.msgpack does not match"):
        ckpt.verify(d)


def test_sharded_safetensors_round_trip_with_an_index_like_save_pretrained(tmp_path):
    import torch
    from selfplay.learner.sharded_safetensors import INDEX, read_sharded, write_sharded

    tensors = {f"layer.{i}.weight": torch.full((64, 64), float(i)) for i in range(5)}  # 16 KiB each
    names = write_sharded(iter(tensors.items()), tmp_path / "many", max_shard_bytes=40_000)
    assert names == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)] + [INDEX]
    index = json.loads((tmp_path / "many" / INDEX).read_text())
    assert index["metadata"]["total_size"] == 5 * 64 * 64 * 4
    assert index["weight_map"]["layer.4.weight"] == "model-00003-of-00003.safetensors"
    got = read_sharded(tmp_path / "many")
    assert got.keys() == tensors.keys() and all(torch.equal(got[k], tensors[k]) for k in tensors)
    assert write_sharded(iter(tensors.items()), tmp_path / "one") == ["model.safetensors"]
    assert not list((tmp_path / "one").glob(".shard-*"))


def test_a_policy_written_in_shards_loads_in_transformers(tmp_path):
    import shutil

    import torch
    from transformers import AutoModelForCausalLM
    from selfplay.learner.sharded_safetensors import write_sharded
    from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir

    model_dir = build_tiny_model_dir(tmp_path / "m", TinyModelSpec())
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    out = tmp_path / "sharded"
    out.mkdir()
    for f in Path(model_dir).iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy2(f, out / f.name)
    names = write_sharded(((n, p.detach()) for n, p in model.named_parameters()), out, max_shard_bytes=20_000)
    assert len(names) > 3
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


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
