"""The embedded model is built once per spec into a cache and copied into each run: the copy has the same
files as a fresh build, another spec gets its own entry, and a second call builds nothing."""

from pathlib import Path

from selfplay.orchestration.run.policy_model import embedded_model_dir
from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir()) if p.is_file()}


def test_cached_model_equals_a_fresh_build_and_is_built_once(tmp_path):
    spec = TinyModelSpec(seed=3)
    first = embedded_model_dir(spec, tmp_path / "cache")
    fresh = build_tiny_model_dir(tmp_path / "fresh", spec)
    assert _files(first) == _files(fresh)
    stamp = (first / "config.json").stat().st_mtime_ns
    assert embedded_model_dir(spec, tmp_path / "cache") == first
    assert (first / "config.json").stat().st_mtime_ns == stamp  # not built again
    other = embedded_model_dir(TinyModelSpec(seed=4), tmp_path / "cache")
    assert other != first and _files(other)["model.safetensors"] != _files(first)["model.safetensors"]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted([first.name, other.name])  # no leftovers
