"""Resolve the policy model: a user's directory or hub id (checked before anything starts), or the embedded
tiny model built offline into the run directory (copied from a per-user cache of built models: the build is
seeded, so a spec always gives the same files, and building costs a second or two of every start).

A hub id is resolved once to its local snapshot directory (the hub cache, downloading it when the machine is
online), and that directory is what every actor, checkpoint and export uses: they all need files on disk
(``save_hf_policy`` copies the tokenizer and config next to the trained weights).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

from selfplay.orchestration.config.schema import Config
from selfplay.errors import InputError
from selfplay.learner.algorithms.registry import needs_of, options_of


def resolve_policy_model(config: Config, run_dir: Path) -> str:
    path = config.policy.model_path
    if not path:
        out = run_dir / "initial_model"
        shutil.copytree(embedded_model_dir(embedded_model_spec(config)), out, dirs_exist_ok=True)
        return str(out)
    return local_model_dir(path)


def embedded_model_dir(spec, cache: Path | None = None) -> Path:
    """The embedded model of ``spec``, built once into ``cache`` (``$SELFPLAY_CACHE/embedded``, default
    ``~/.cache/selfplay/embedded``). The key holds what the bytes depend on: the spec, the builder's source and the
    torch and transformers versions. A build lands under a temporary name and is renamed, so concurrent runs never
    see half a model."""
    import selfplay.tasks.tiny_model as builder

    cache = cache or Path(os.environ.get("SELFPLAY_CACHE", Path.home() / ".cache" / "selfplay")) / "embedded"
    key = hashlib.sha256(repr((spec, Path(builder.__file__).read_bytes(), metadata.version("torch"),
                               metadata.version("transformers"))).encode()).hexdigest()[:16]
    final = cache / key
    if not (final / "config.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
        builder.build_tiny_model_dir(building, spec)
        try:
            building.rename(final)
        except OSError:  # another run built it first
            shutil.rmtree(building, ignore_errors=True)
    return final


def embedded_model_spec(config: Config):
    """The embedded tiny model of the built-in task: its vocabulary holds the task's words (the game task's
    prompt word and strategies, or the sorting task's letters)."""
    from selfplay.tasks import game
    from selfplay.tasks.tiny_model import TinyModelSpec

    words = (game.PROMPT_PREFIX, *config.preference.strategies) if config.task.name == "game" else ()
    if config.task.name != "game" and needs_of(config).preferences == "self_judge":
        words = sorting_words_with_the_judges(config)
    return TinyModelSpec(alphabet_size=config.task.alphabet_size, seed=config.run.seed, words=words)


def sorting_words_with_the_judges(config: Config) -> tuple[str, ...]:
    """The sorting task's words plus the words of OSP's judge template and verdicts that are not among them: a
    chat model judges with words that are not its answers' (the tiny model's letters would be both)."""
    from selfplay.tasks import sorting

    words = [sorting.PROMPT_PREFIX, *sorting.alphabet(config.task.alphabet_size)]
    base = len(words)
    o = options_of(config)  # the self-judging algorithm's section (OSP)
    for word in [*o.judge_template.format(prompt="", a="", b="").split(), o.verdict_a, o.verdict_b]:
        if word not in words:
            words.append(word)
    return tuple(words) if len(words) > base else ()  # (): the sorting task's own vocabulary, the same model


def looks_like_hub_id(path: str) -> bool:
    return not path.startswith((".", "/", "~")) and path.count("/") == 1 and not Path(path).exists()


def local_model_dir(path: str, key: str = "policy.model_path") -> str:
    """A Hugging Face model directory for ``path``: the directory itself, or a hub id's local snapshot."""
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise InputError(f"{key} {path} is a directory without config.json (not a Hugging Face model "
                             "directory)")
        return str(p)
    if not looks_like_hub_id(path):
        raise InputError(f"{key} {path}: no such model directory")
    from huggingface_hub import snapshot_download

    try:  # the cache first: no network round trip when the snapshot is already here
        return snapshot_download(path, local_files_only=True)
    except Exception:  # not cached (LocalEntryNotFoundError), or a partial cache
        pass
    try:
        return snapshot_download(path)
    except Exception as exc:  # offline, unknown repo, gated repo without a token
        raise InputError(f"{key} {path}: not a local directory, not in the hub cache, and not downloadable "
                         f"({type(exc).__name__})") from None
