"""policy.model_path: a directory, or a hub id resolved once to its local snapshot (no network here: the hub
cache is built by hand, laid out as huggingface_hub lays it out)."""

import shutil

import pytest

from selfplay.errors import InputError
from selfplay.orchestration.run.policy_model import local_model_dir
from selfplay.tasks.tiny_chat_model import build_tiny_chat_model_dir


def make_hub_cache(root, repo_id: str, model_dir) -> str:
    """A hub cache holding ``model_dir`` as the snapshot of ``repo_id`` at revision main; returns the cache."""
    owner, name = repo_id.split("/")
    repo = root / f"models--{owner}--{name}"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return str(root)


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    cache = make_hub_cache(tmp_path / "hub", "acme/tiny-chat", build_tiny_chat_model_dir(tmp_path / "m"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", cache)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_id_resolves_to_its_cached_snapshot(offline_hub):
    path = local_model_dir("acme/tiny-chat")
    assert path.startswith(offline_hub) and path.endswith("0" * 40)
    from transformers import AutoConfig
    assert AutoConfig.from_pretrained(path).tie_word_embeddings


def test_unknown_hub_id_and_bad_directories_are_one_line(offline_hub, tmp_path):
    with pytest.raises(InputError, match="policy.model_path acme/none: not a local directory, not in the hub cache"):
        local_model_dir("acme/none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="is a directory without config.json"):
        local_model_dir(str(tmp_path / "empty"))
    with pytest.raises(InputError, match="no such model directory"):
        local_model_dir(str(tmp_path / "missing"))
