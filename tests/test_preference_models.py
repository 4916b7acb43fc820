"""preference.kind=reward_model, pairwise and python: each model's P against a by-hand transformers computation
on tiny offline classifiers with their own tokenizer (tests/preference_models.py), their costs, and the checks
that run before Ray starts."""

import math
import sys

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.loop.experience import valid_matrix
from selfplay.orchestration.run.inputs import check_preference_inputs
from selfplay.preference.matrix import preference_matrices
from selfplay.preference.model import build_preference_model
from selfplay.rollout.records import Completion
from selfplay.errors import ConfigError, InputError
from tests.preference_models import (IM_START, build_pairwise_classifier_dir, build_reward_model_dir,
                                     build_two_label_reward_dir)

CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Spain? Answer briefly."}]
RESPONSES = ["Madrid.", "The capital of Spain is Madrid, of course.", "Paris again", "I think it is Madrid 🙂"]
POLICY_SPECIAL = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
TEMPLATE = "{prompt}\n\nResponse A:\n{a}\n\nResponse B:\n{b}\n\nIs Response A better than Response B?"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference_models")
    return {"reward": str(build_reward_model_dir(root / "reward")),
            "no_pad": str(build_reward_model_dir(root / "no_pad", pad=False)),
            "plain": str(build_reward_model_dir(root / "plain", chat_template=False)),
            "pairwise1": str(build_pairwise_classifier_dir(root / "pairwise1", num_labels=1, seed=1)),
            "pairwise2": str(build_pairwise_classifier_dir(root / "pairwise2", num_labels=2, seed=2)),
            "two_label": str(build_two_label_reward_dir(root / "two_label"))}


def direct(path: str, sequences: list[list[int]]) -> torch.Tensor:
    """Logits of each sequence alone (no padding), straight from transformers."""
    model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return torch.stack([model(torch.tensor([ids])).logits[0].double() for ids in sequences])


def chatml_ids(path: str, messages: list[dict]) -> list[int]:
    return list(AutoTokenizer.from_pretrained(path).apply_chat_template(messages, tokenize=True, return_dict=False))


def record_forward_rows(model, ids: bool = False) -> list:
    """The rows (or the input ids) of every forward pass of ``model``'s classifier, appended as they happen."""
    seen = []

    def hook(module, args, kwargs, output):
        seen.append(kwargs["input_ids"] if ids else kwargs["input_ids"].shape[0])

    model.classifier.model.register_forward_hook(hook, with_kwargs=True)
    return seen


def _groups(prompt, *texts_per_group):
    return [[Completion(g, prompt, [1], [2], t, 0) for t in texts] for g, texts in enumerate(texts_per_group)]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# -- reward_model -----------------------------------------------------------------------------------------------

def test_reward_model_probability_equals_transformers(dirs):
    model = build_preference_model("reward_model", model_path=dirs["reward"], temperature=2.0, batch_size=2)
    for prompt in (CHAT, "What is the capital of Spain?"):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        r = direct(dirs["reward"], [chatml_ids(dirs["reward"], messages + [{"role": "assistant", "content": y}])
                                    for y in RESPONSES])[:, 0]
        np.testing.assert_allclose(model.scores([prompt] * 4, RESPONSES), r.numpy(), atol=1e-5)
        got = model.probabilities([prompt] * 3, RESPONSES[:3], RESPONSES[1:])
        want = [_sigmoid((r[i] - r[i + 1]).item() / 2.0) for i in range(3)]
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert max(abs(p - 0.5) for p in want) > 0.01  # the random head does tell responses apart


def test_reward_model_scores_each_response_once_per_group(dirs):
    model = build_preference_model("reward_model", model_path=dirs["reward"], temperature=0.5, batch_size=2)
    rows = record_forward_rows(model)
    groups = _groups(CHAT, RESPONSES[:3], RESPONSES)
    matrices, stats = preference_matrices(model, groups)
    assert stats.calls == 3 + 4 == sum(rows)  # K scorings a group, not K(K-1)/2 pairs
    assert len(rows) == 4 and max(rows) == 2  # batch_size sequences a forward pass
    r = direct(dirs["reward"], [model.render(CHAT, y) for y in RESPONSES])[:, 0].numpy()
    for m, k in zip(matrices, (3, 4)):
        assert valid_matrix(m)
        np.testing.assert_allclose(m, 1 / (1 + np.exp(-(r[:k, None] - r[None, :k]) / 0.5)), atol=1e-5)
        np.testing.assert_allclose(m + m.T, 1.0, atol=1e-12)


def test_reward_model_reads_its_own_chat_template(dirs):
    model = build_preference_model("reward_model", model_path=dirs["reward"])
    seen = record_forward_rows(model, ids=True)
    model.scores([CHAT], [RESPONSES[1]])
    tokenizer = AutoTokenizer.from_pretrained(dirs["reward"])
    text = tokenizer.decode(seen[0][0])
    # Every turn of the chat prompt, then the response as the assistant's turn, in ChatML.
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                    "<|im_start|>assistant\nParis.<|im_end|>\n"
                    "<|im_start|>user\nAnd of Spain? Answer briefly.<|im_end|>\n"
                    f"<|im_start|>assistant\n{RESPONSES[1]}<|im_end|>")
    assert tokenizer.convert_tokens_to_ids(IM_START) in seen[0][0].tolist()
    assert not any(token in text for token in POLICY_SPECIAL)


def test_reward_model_without_pad_token_reads_each_sequences_last_token(dirs):
    model = build_preference_model("reward_model", model_path=dirs["no_pad"], batch_size=4)
    assert model.classifier.tokenizer.pad_token is None and model.classifier.pad_id is None
    sequences = [model.render("Hi", y) for y in RESPONSES]
    assert {s[-1] for s in sequences} == {model.classifier.tokenizer.eos_token_id}  # padding with EOS would misread
    np.testing.assert_allclose(model.scores(["Hi"] * 4, RESPONSES), direct(dirs["no_pad"], sequences)[:, 0],
                               atol=1e-5)
    assert model.classifier.model.config.pad_token_id not in {s[-1] for s in sequences}


def test_reward_model_without_chat_template_reads_plain_text(dirs):
    model = build_preference_model("reward_model", model_path=dirs["plain"], batch_size=3)
    tokenizer = AutoTokenizer.from_pretrained(dirs["plain"])
    sequences = [tokenizer(f"{CHAT[0]['content']}\n{CHAT[1]['content']}\n{CHAT[2]['content']}\n{CHAT[3]['content']}"
                           f"\n{y}", add_special_tokens=True).input_ids for y in RESPONSES]
    assert [model.render(CHAT, y) for y in RESPONSES] == sequences
    np.testing.assert_allclose(model.scores([CHAT] * 4, RESPONSES), direct(dirs["plain"], sequences)[:, 0],
                               atol=1e-5)


# -- pairwise ---------------------------------------------------------------------------------------------------

def _direct_first_wins(path: str, prompt_text: str, a: str, b: str, num_labels: int) -> float:
    text = TEMPLATE.format(prompt=prompt_text, a=a, b=b)
    logits = direct(path, [chatml_ids(path, [{"role": "user", "content": text}])])[0]
    return torch.sigmoid(logits[0]).item() if num_labels == 1 else torch.softmax(logits, -1)[0].item()


@pytest.mark.parametrize("num_labels", [1, 2])
def test_pairwise_probability_equals_transformers_in_both_orders(dirs, num_labels):
    path = dirs[f"pairwise{num_labels}"]
    model = build_preference_model("pairwise", model_path=path, pairwise_template=TEMPLATE, batch_size=3)
    pairs = [(RESPONSES[i], RESPONSES[j]) for i in range(4) for j in range(i + 1, 4)]
    got, disagree = model.both_orders([CHAT] * len(pairs), [a for a, _ in pairs], [b for _, b in pairs])
    prompt_text = "\n".join(m["content"] for m in CHAT)
    disagreements = 0
    for p, (a, b) in zip(got, pairs):
        f_ab = _direct_first_wins(path, prompt_text, a, b, num_labels)
        f_ba = _direct_first_wins(path, prompt_text, b, a, num_labels)
        assert p == pytest.approx(0.5 * (f_ab + 1.0 - f_ba), abs=1e-5)
        disagreements += (f_ab - 0.5) * (f_ba - 0.5) > 0
    assert max(abs(p - 0.5) for p in got) > 0.02  # the random classifier does tell responses apart
    assert int(disagree.sum()) == disagreements
    _, stats = preference_matrices(model, _groups(CHAT, RESPONSES))  # the same 6 pairs, as the service asks them
    assert stats.metrics()["preference/swap_inconsistency"] == pytest.approx(disagreements / len(pairs))


def test_pairwise_is_antisymmetric_and_its_matrix_valid(dirs):
    model = build_preference_model("pairwise", model_path=dirs["pairwise2"], pairwise_template=TEMPLATE)
    forward = model.probabilities(["Sort: b a c"] * 3, RESPONSES[:3], RESPONSES[1:])
    backward = model.probabilities(["Sort: b a c"] * 3, RESPONSES[1:], RESPONSES[:3])
    np.testing.assert_allclose(np.add(forward, backward), 1.0, atol=1e-6)
    assert model.probabilities(["x"], ["same"], ["same"]) == [pytest.approx(0.5, abs=1e-12)]
    matrices, stats = preference_matrices(model, _groups(CHAT, RESPONSES))
    m = matrices[0]
    assert stats.calls == 2 * 6 and valid_matrix(m)  # each of the K(K-1)/2 pairs read in both orders
    np.testing.assert_allclose(np.diag(m), 0.5)
    np.testing.assert_allclose(m + m.T, 1.0, atol=1e-12)


# -- python -----------------------------------------------------------------------------------------------------

JUDGES = '''
class Longer:
    def __init__(self):
        self.calls = 0

    def probabilities(self, prompts, first, second):
        self.calls += 1
        return [0.9 if len(a) > len(b) else 0.1 for a, b in zip(first, second)]


class Sloppy:
    def probabilities(self, prompts, first, second):
        return {"nan": float("nan"), "big": 1.5, "text": "yes"}.get(first[0], 0.7), 0.3


class Raises:
    def probabilities(self, prompts, first, second):
        raise RuntimeError("judge is down")


class Short:
    def probabilities(self, prompts, first, second):
        return [0.5]
'''


@pytest.fixture
def judges(tmp_path, monkeypatch):
    (tmp_path / "my_judges.py").write_text(JUDGES)
    monkeypatch.chdir(tmp_path)
    yield str(tmp_path)
    sys.modules.pop("my_judges", None)


def test_python_class_plugs_in_and_each_pair_is_asked_once(judges):
    model = build_preference_model("python", class_path="my_judges:Longer", search_path=judges)
    matrices, stats = preference_matrices(model, _groups("q", ["a", "bbb", "cc"], ["x", "yy"]))
    assert stats.calls == 3 + 1 and model.model.calls == 1  # every pair of every group in one call
    np.testing.assert_allclose(matrices[0], [[0.5, 0.1, 0.1], [0.9, 0.5, 0.9], [0.9, 0.1, 0.5]])
    assert model.rejected == 0


def test_python_class_bad_values_are_rejected_and_counted(judges, capsys):
    sloppy = build_preference_model("python", class_path="my_judges:Sloppy", search_path=judges)
    for first, reason in (("nan", "returned nan"), ("big", "returned 1.5, not a probability in [0, 1]"),
                          ("text", "returned 'yes', not a number")):
        p = sloppy.probabilities(["q", "q"], [first, "b"], ["c", "d"])
        assert math.isnan(p[0]) and p[1] == 0.3
        assert reason in capsys.readouterr().err
    assert sloppy.rejected == 3
    raises = build_preference_model("python", class_path="my_judges:Raises", search_path=judges)
    matrices, _ = preference_matrices(raises, _groups("q", ["a", "b", "c"]))
    assert not valid_matrix(matrices[0]) and raises.rejected == 3
    assert "raised RuntimeError: judge is down (3 values rejected" in capsys.readouterr().err
    short = build_preference_model("python", class_path="my_judges:Short", search_path=judges)
    assert all(math.isnan(p) for p in short.probabilities(["q"] * 2, ["a", "b"], ["c", "d"]))
    assert short.rejected == 2 and "returned 1 probabilities for 2 pairs" in capsys.readouterr().err


# -- checks before Ray starts -----------------------------------------------------------------------------------

def _config(*overrides):
    return load_config(None, list(overrides))


def test_classifier_directories_are_checked_before_the_run(dirs, tmp_path):
    assert check_preference_inputs(_config("preference.kind=reward_model",
                                           f"preference.model_path={dirs['reward']}")) == dirs["reward"]
    assert check_preference_inputs(_config("preference.kind=pairwise",
                                           f"preference.model_path={dirs['pairwise2']}")) == dirs["pairwise2"]
    with pytest.raises(ConfigError, match="'preference.model_path' is required with preference.kind=reward_model"):
        _config("preference.kind=reward_model")
    with pytest.raises(InputError, match=r"preference.model_path .*two_label has 2 labels; this preference kind "
                                         r"needs 1$"):
        check_preference_inputs(_config("preference.kind=reward_model", f"preference.model_path={dirs['two_label']}"))
    from transformers import LlamaConfig
    LlamaConfig(architectures=["LlamaForCausalLM"]).save_pretrained(tmp_path / "causal")
    with pytest.raises(InputError, match=r"causal is not a sequence classifier \(architectures: \['LlamaForCausalLM'"):
        check_preference_inputs(_config("preference.kind=pairwise", f"preference.model_path={tmp_path / 'causal'}"))
    with pytest.raises(InputError, match="preference.model_path /no/such/dir: no such model directory"):
        check_preference_inputs(_config("preference.kind=reward_model", "preference.model_path=/no/such/dir"))


def test_python_class_and_templates_are_checked_before_the_run(judges):
    check_preference_inputs(_config("preference.kind=python", "preference.class_path=my_judges:Longer"))
    with pytest.raises(ConfigError, match="'preference.class_path' 'nope_xyz:Judge': module 'nope_xyz' does not "
                                          "import"):
        check_preference_inputs(_config("preference.kind=python", "preference.class_path=nope_xyz:Judge"))
    with pytest.raises(ConfigError, match="'preference.class_path' is required"):
        _config("preference.kind=python")
    with pytest.raises(ConfigError, match=r"'preference.pairwise_template' must contain \{prompt\}, \{a\}, \{b\}"):
        _config("preference.pairwise_template={prompt} {a}")
    with pytest.raises(ConfigError, match="'preference.pairwise_template' cannot be filled in"):
        _config("preference.pairwise_template={prompt} {a} {b} {score}")
    with pytest.raises(ConfigError, match="'preference.temperature' must be > 0"):
        _config("preference.temperature=0")
