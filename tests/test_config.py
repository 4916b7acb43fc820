from pathlib import Path

import pytest

from selfplay.orchestration.config.schema import Config

from selfplay.orchestration.config.loading import load_config, parse_override, to_yaml, config_from_dict
from selfplay.errors import ConfigError
import yaml


def test_defaults_are_the_embedded_tiny_run():
    config = load_config()
    assert config.algorithm.name == "sppo"
    assert config.rollout.engine == "vllm"
    assert config.policy.model_path is None
    assert config.rollout.vllm.max_model_len == 0  # auto: from the rendered prompts and max_tokens
    # the embedded model's preset, under whatever the user sets
    assert config.rollout.max_tokens == 6 and config.rollout.ignore_eos is True
    assert config.algorithm.osp.labels == "hard" and config.algorithm.drift.filter_threshold == 0.5 \
        and config.algorithm.drift.beta == 0.01
    assert "rollout.ignore_eos=True" in config.preset_keys
    # the tiny model's learning rate and SPPO step size come from the preset, not the code defaults
    assert config.learner.lr == 1e-3 and config.algorithm.sppo.eta == 10 and config.learner.micro_batch_size == 64
    assert {"learner.lr=0.001", "algorithm.sppo.eta=10.0", "algorithm.sppo.iteration_steps=10"} <= \
        set(config.preset_keys)


def test_embedded_preset_is_overridable_and_off_for_a_user_model():
    config = load_config(None, ["rollout.max_tokens=9", "algorithm.osp.labels=soft"])
    assert config.rollout.max_tokens == 9 and config.algorithm.osp.labels == "soft"
    assert config.rollout.ignore_eos is True and "rollout.max_tokens=6" not in config.preset_keys
    user = load_config(None, ["policy.model_path=/models/x", "preference.kind=function",
                              "preference.function=m:f", "task.prompts_path=p.jsonl"])
    assert user.preset_keys == []
    assert user.rollout.ignore_eos is False and user.rollout.max_tokens == 256
    assert user.algorithm.osp.labels == "soft"  # the papers'
    assert user.algorithm.drift.alpha == 0.001 and user.algorithm.drift.beta == 0.1
    # a pretrained chat model's defaults: SPPO's paper and TRL's online DPO / Nash-MD
    assert user.learner.lr == 5e-7 and user.algorithm.sppo.eta == 1000 and user.algorithm.sppo.iteration_steps == 1250
    assert user.learner.micro_batch_size == 8


@pytest.mark.parametrize("overrides, message", [
    (["task.prompts_path=p.jsonl"], "'preference.kind' sorting judges only the built-in"),
    (["preference.kind=function"], "'preference.function' is required"),
    (["rollout.stop=[1]"], "'rollout.stop' expects a list of non-empty strings"),
    (["rollout.vllm.tensor_parallel_size=0"], "'rollout.vllm.tensor_parallel_size' must be >= 1"),
])
def test_user_run_keys_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, overrides)


def test_stop_strings_from_yaml_or_one_override():
    assert load_config(None, ['rollout.stop=["###", "</s>"]']).rollout.stop == ["###", "</s>"]
    assert load_config(None, ["rollout.stop=END"]).rollout.stop == ["END"]


def test_overrides_keep_yaml_types():
    config = load_config(None, ["rollout.k=6", "learner.lr=0.5", "rollout.ignore_eos=false",
                                "policy.model_path=/models/x", "algorithm.sppo.form=best_worst"])
    assert config.rollout.k == 6 and isinstance(config.rollout.k, int)
    assert config.learner.lr == 0.5
    assert config.rollout.ignore_eos is False
    assert config.policy.model_path == "/models/x"
    assert config.algorithm.sppo.form == "best_worst"


def test_int_accepted_for_float_field():
    assert load_config(None, ["learner.lr=1"]).learner.lr == 1.0


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  total_steps: 7\nrollout:\n  k: 3\n")
    config = load_config(path, ["rollout.k=5"])
    assert config.run.total_steps == 7
    assert config.rollout.k == 5


@pytest.mark.parametrize("override, key", [
    ("rollout.kk=3", "rollout.kk"),
    ("nosuch=1", "nosuch"),
    ("algorithm.sppo.etaa=1", "algorithm.sppo.etaa"),
])
def test_unknown_key_names_the_key(override, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(None, [override])


@pytest.mark.parametrize("override, message", [
    ("rollout.k=abc", "'rollout.k' expects an integer"),
    ("rollout.k=2.5", "'rollout.k' expects an integer"),
    ("learner.lr=fast", "'learner.lr' expects a number"),
    ("rollout.ignore_eos=3", "'rollout.ignore_eos' expects true or false"),
    ("rollout.engine=tgi", "'rollout.engine' must be one of vllm, torch"),
    ("algorithm.name=ppo", "'algorithm.name' must be one of sppo"),
    ("rollout=3", "'rollout' must be a mapping"),
])
def test_wrong_type_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])


@pytest.mark.parametrize("override, key", [
    ("rollout.k=1", "rollout.k"), ("run.total_steps=0", "run.total_steps"),
    ("learner.zero_stage=4", "learner.zero_stage"), ("rollout.top_p=1.5", "rollout.top_p"),
    ("rollout.cpu_threads_bind=1;2", "rollout.cpu_threads_bind"),
    ("rollout.cpu_threads_bind=x", "rollout.cpu_threads_bind"),
    ("learner.num_ranks=3", "learner.num_ranks"),  # does not divide rollout.prompts_per_step (16)
    ("rollout.max_restarts=-1", "rollout.max_restarts"), ("preference.max_restarts=-1", "preference.max_restarts"),
    ("run.auto_resume=-1", "run.auto_resume"), ("run.step_timeout_s=-5", "run.step_timeout_s"),
])
def test_range_errors_name_the_key(override, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        load_config(None, [override])


def test_core_lists_read_as_text_one_per_worker():
    assert load_config(None, ["rollout.cpu_threads_bind=1"]).rollout.cpu_threads_bind == "1"  # YAML's int 1
    config = load_config(None, ["rollout.num_workers=2", "rollout.cpu_threads_bind=1;2-3,5"])
    assert config.rollout.cpu_threads_bind == "1;2-3,5"


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("rollout.k")
    with pytest.raises(ConfigError, match="empty key"):
        parse_override("rollout..k=3")


def test_bad_yaml_file_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run:\n  name: a\n  total_steps: [1,\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+ is not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_resolved_yaml_round_trips():
    config = load_config(None, ["rollout.k=5", "run.name=x"])
    again = config_from_dict(yaml.safe_load(to_yaml(config)))
    assert again == config
    assert isinstance(again, Config)


def test_the_gpu_chat_example_config_validates():
    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "chat-gpu.yaml")
    assert config.policy.model_path == "Qwen/Qwen2.5-1.5B-Instruct" and config.preset_keys == []
    assert config.preference.kind == "function" and config.task.eval_split == "test_prefs"
    assert config.learner.zero_stage == 3 and config.rollout.vllm.tensor_parallel_size == 1


def test_mixture_algorithms_default_to_the_torch_engine_unless_an_engine_is_named():
    config = load_config(None, ["algorithm.name=nash_md"])
    assert config.rollout.engine == "torch" and "rollout.engine=torch" in config.preset_keys
    assert load_config(None, ["algorithm.name=ipo_md"]).rollout.engine == "torch"
    assert load_config(None, ["algorithm.name=nash_md", "rollout.engine=vllm"]).rollout.engine == "vllm"
    assert load_config(None, ["algorithm.name=online_ipo"]).rollout.engine == "vllm"
    assert load_config(None, []).rollout.engine == "vllm"


def test_the_embedded_osp_model_holds_its_judges_words_and_no_other_run_changes():
    from selfplay.orchestration.run.policy_model import embedded_model_spec
    from selfplay.tasks.tiny_model import build_tokenizer

    osp = load_config(None, ["algorithm.name=osp"])
    tokenizer = build_tokenizer(embedded_model_spec(osp))
    for word in ("first", "second", "first:", "second:", "better:"):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1 and tokenizer.unk_token_id not in \
            tokenizer(word, add_special_tokens=False).input_ids, word
    assert embedded_model_spec(load_config()).words == ()  # SPPO's embedded model is as it was
    letters = load_config(None, ["algorithm.name=osp", "algorithm.osp.verdict_a=a", "algorithm.osp.verdict_b=b",
                                 "algorithm.osp.judge_template={prompt} {a} {b}"])
    assert embedded_model_spec(letters).words == ()  # the paper's words are letters of the task already


@pytest.mark.parametrize("override, message", [
    ("rollout.top_p=0", "'rollout.top_p' must be in (0, 1]"),
    ("preference.max_rejected_share=1", "'preference.max_rejected_share' must be in [0, 1)"),
    ("ray.num_cpus=0", "'ray.num_cpus' must be >= 1 or auto"),
    ("algorithm.ipo.mixture.candidates=1", "'algorithm.ipo.mixture.candidates' must be >= 2"),
    ("learner.zero_stage=4", "'learner.zero_stage' must be in [0, 3]"),
])
def test_each_bound_is_declared_on_its_field_and_checked_with_its_key(override, message):
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    assert message in str(caught.value)


def test_bounds_are_described_as_a_reader_writes_them():
    from selfplay.config_fields import bounds_of, describe_bounds
    from selfplay.orchestration.config.schema import LearnerConfig, PreferenceConfig

    assert describe_bounds({"ge": 1}) == ">= 1" and describe_bounds({"gt": 0, "le": 1}) == "in (0, 1]"
    assert describe_bounds({"lt": 3}) == "< 3" and describe_bounds({}) == ""
    fields = LearnerConfig.model_fields
    assert bounds_of(fields["zero_stage"]) == {"ge": 0, "le": 3} and bounds_of(fields["num_threads"]) == {"ge": 1}
    assert bounds_of(PreferenceConfig.model_fields["max_rejected_share"]) == {"ge": 0, "lt": 1}


def test_an_error_names_where_the_key_was_set(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("run:\n  total_steps: 7\nrollout:\n  prompts_per_step: 16\n  k: 2.5\n")
    with pytest.raises(ConfigError, match=r"'rollout\.k' expects an integer, got 2\.5 \(.*run\.yaml, line 5\)"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"'rollout\.k' expects an integer, got 'x' \(set by the override rollout\.k=x\)"):
        load_config(path, ["rollout.k=x"])
    path.write_text("rollout:\n  k: 1\n  top_p: 0\nlearner:\n  lr: fast\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "'rollout.k' must be >= 2" in str(caught.value) and "(and 2 more: rollout.top_p, learner.lr)" in str(caught.value)


def test_yaml_readings_of_numbers_text_and_lists():
    config = load_config(None, ["run.name=2024", "learner.lr=3e-4", "algorithm.osp.verdict_a=1"])
    assert config.run.name == "2024" and config.learner.lr == 3e-4 and config.algorithm.osp.verdict_a == "1"
    with pytest.raises(ConfigError, match="'rollout.ignore_eos' expects true or false"):
        load_config(None, ["rollout.ignore_eos=yes please"])  # strict: only YAML's true and false
    with pytest.raises(ConfigError, match="'learner.num_threads' must be >= 1 or auto"):
        load_config(None, ["learner.num_threads=0"])
    with pytest.raises(ConfigError, match="'learner.num_threads' expects an integer or auto, got 'many'"):
        load_config(None, ["learner.num_threads=many"])


def test_a_default_outside_its_bounds_cannot_ship():
    from pydantic import ValidationError

    from selfplay.config_fields import Section, _f

    class Broken(Section):
        k: int = _f(1, "needs two", ge=2)

    with pytest.raises(ValidationError):
        Broken()
