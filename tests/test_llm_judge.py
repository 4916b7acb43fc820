"""preference.kind=judge: a generative judge's P against a by-hand transformers computation on a tiny offline causal
LM with its own ChatML tokenizer (tests/preference_models.py), on the torch engine (fast) and on vLLM (the engine a
run uses); antisymmetry and ties through the service's matrices; the checks that run before Ray starts."""

import math
import os

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.loop.experience import valid_matrix
from selfplay.orchestration.run.inputs import check_preference_inputs
from selfplay.preference.llm_judge import LLMJudge, load_judge, verdict_token_ids, verdict_variants
from selfplay.preference.matrix import preference_matrices
from selfplay.rollout.records import Completion
from selfplay.rollout.torch_engine import TorchEngine
from selfplay.errors import ConfigError, InputError
from tests.preference_models import build_classifier_dir, build_judge_dir

TEMPLATE = load_config(None, []).preference.judge_template
CHAT = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "And of Spain? Answer briefly."}]
RESPONSES = ["Madrid.", "The capital of Spain is Madrid, of course.", "Paris again", "I think it is Madrid 🙂"]
PAIRS = [(RESPONSES[i], RESPONSES[j]) for i in range(4) for j in range(i + 1, 4)]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return str(build_judge_dir(tmp_path_factory.mktemp("judge") / "judge", seed=1))


@pytest.fixture(scope="module")
def judge(judge_dir):
    return LLMJudge(TorchEngine(judge_dir), AutoTokenizer.from_pretrained(judge_dir), TEMPLATE, max_len=1024)


def by_hand(path: str, prompt, pairs) -> list[float]:
    """P(a > b) for each pair, from transformers alone: the ChatML rendering of the filled template, the next
    token's softmax, P("A") + P(" A") against P("B") (" B" is a space and then "B"), both orders averaged."""
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    a_ids = [tokenizer.convert_tokens_to_ids("A"), tokenizer.convert_tokens_to_ids("ĠA")]
    b_id = tokenizer.convert_tokens_to_ids("B")
    text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)

    def f(a, b):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": TEMPLATE.format(prompt=text, a=a, b=b)}],
                                            add_generation_prompt=True, tokenize=True, return_dict=False)
        with torch.no_grad():
            p = torch.softmax(model(torch.tensor([ids])).logits[0, -1].double(), -1)
        return (p[a_ids].sum() / (p[a_ids].sum() + p[b_id])).item()

    return [0.5 * (f(a, b) + 1.0 - f(b, a)) for a, b in pairs]


def _check_against_transformers(model: LLMJudge, path: str) -> None:
    spread = 0.0
    for prompt in (CHAT, "What is the capital of Spain?"):
        got = model.probabilities([prompt] * len(PAIRS), [a for a, _ in PAIRS], [b for _, b in PAIRS])
        want = by_hand(path, prompt, PAIRS)
        np.testing.assert_allclose(got, want, atol=1e-5)
        spread = max([spread] + [abs(p - 0.5) for p in want])
    assert spread > 0.05  # the random judge does tell responses apart


def test_judge_probability_equals_transformers(judge, judge_dir):
    assert judge.variants_a == [32, 350] and len(judge.variants_b) == 1  # "A" and " A"; "B" alone
    _check_against_transformers(judge, judge_dir)


@pytest.mark.slow  # vLLM in this process: it holds a KV cache and changes torch's thread count until the end
def test_judge_on_vllm_equals_transformers(judge_dir):
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process, as VLLMEngine sets it
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

    model = load_judge(judge_dir, TEMPLATE, "A", "B", {"dtype": "float32", "seed": 0, "max_model_len": 0})
    try:
        assert model.max_len == 1024  # 0: the judge model's own context
        _check_against_transformers(model, judge_dir)
    finally:  # vLLM made this process a one-rank torch.distributed group: later tests expect none
        del model
        cleanup_dist_env_and_memory()


def test_judge_reads_its_own_chat_template(judge, judge_dir):
    text = AutoTokenizer.from_pretrained(judge_dir).decode(judge.render(CHAT, "x", "y"))
    assert text.startswith("<|im_start|>user\nWhich response answers the prompt better?\n\nPrompt:\n"
                           "You are a helpful assistant.\nAnd of Spain?")
    assert text.endswith("Response A:\nx\n\nResponse B:\ny\n\nAnswer with one letter, A or B.<|im_end|>\n"
                         "<|im_start|>assistant\n")


def test_judge_is_antisymmetric_and_identical_responses_tie_without_a_call(judge):
    first, second = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    forward = judge.probabilities(["q"] * len(PAIRS), first, second)
    backward = judge.probabilities(["q"] * len(PAIRS), second, first)
    np.testing.assert_allclose(np.add(forward, backward), 1.0, atol=1e-6)
    group = [Completion(0, CHAT, [1], [2], t, 0) for t in RESPONSES + [RESPONSES[0]]]
    matrices, stats = preference_matrices(judge, [group])
    m = matrices[0]
    assert valid_matrix(m) and m[0, 4] == m[4, 0] == 0.5
    np.testing.assert_allclose(m + m.T, 1.0, atol=1e-12)
    assert stats.calls == 2 * 9  # 10 pairs, the identical one not asked, the others in both orders
    assert 0.0 <= stats.metrics()["preference/swap_inconsistency"] <= 1.0


def test_a_judge_prompt_too_long_is_rejected_not_cut(judge_dir, capsys):
    short = LLMJudge(TorchEngine(judge_dir), AutoTokenizer.from_pretrained(judge_dir), TEMPLATE)
    # Room for the short pair in both orders and the verdict token after it, not for the long one.
    short.max_len = max(len(short.render("q", "Madrid.", "Paris.")), len(short.render("q", "Paris.", "Madrid."))) + 1
    p = short.probabilities(["q", "q"], ["Madrid.", "word " * 50], ["Paris.", "Paris."])
    assert not math.isnan(p[0]) and math.isnan(p[1]) and short.rejected == 2  # its two orders
    assert f"do not fit its context of {short.max_len} (preference.judge_max_model_len)" in capsys.readouterr().err


def test_verdicts_are_first_tokens_with_their_leading_space_variants(judge_dir):
    tokenizer = AutoTokenizer.from_pretrained(judge_dir)
    assert verdict_variants(tokenizer, "A") == [tokenizer.convert_tokens_to_ids(t) for t in ("A", "ĠA")]
    assert verdict_variants(tokenizer, "B") == [tokenizer.convert_tokens_to_ids("B")]  # not the bare space of " B"
    with pytest.raises(ConfigError, match=r"^config keys 'preference.verdict_a' \('Response A'\) and "
                                          r"'preference.verdict_b' \('Response B'\) start with the same token"):
        verdict_token_ids(tokenizer, "Response A", "Response B")


def test_judge_inputs_are_checked_before_the_run(judge_dir, tmp_path):
    def config(*overrides):
        return load_config(None, ["preference.kind=judge", f"preference.model_path={judge_dir}", *overrides])

    assert check_preference_inputs(config()) == judge_dir
    with pytest.raises(ConfigError, match="start with the same token"):
        check_preference_inputs(config("preference.verdict_a=Response A", "preference.verdict_b=Response B"))
    classifier = build_classifier_dir(tmp_path / "classifier")
    with pytest.raises(InputError, match="is a sequence classifier; preference.kind=judge needs a generative"):
        check_preference_inputs(config(f"preference.model_path={classifier}"))
    with pytest.raises(ConfigError, match=r"'preference.judge_template' must contain \{prompt\}, \{a\}, \{b\}"):
        config("preference.judge_template=Is {a} better than {b}?")
    with pytest.raises(ConfigError, match="'preference.model_path' is required with preference.kind=judge"):
        load_config(None, ["preference.kind=judge"])
