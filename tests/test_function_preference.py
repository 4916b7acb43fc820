"""preference.kind=function: a user's scoring or pairwise callable, imported from the working directory."""

import math

import numpy as np
import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.errors import ConfigError
from selfplay.orchestration.loop.experience import valid_matrix
from selfplay.orchestration.run.inputs import check_preference_function
from selfplay.preference.function_model import FunctionPreference, bradley_terry, import_callable
from selfplay.preference.matrix import preference_matrices
from selfplay.rollout.records import Completion

MODULE = '''
calls = []

def length(prompt, response):
    calls.append((prompt, response))
    return float(len(response))

def picky(prompt, response):
    if response == "boom":
        raise RuntimeError("cannot score this")
    if response == "nan":
        return float("nan")
    return 1.0

def prefer_first_alphabetically(prompt, a, b):
    return 1.5 if a == "bad" else (0.9 if a < b else 0.1)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    yield str(tmp_path)
    import sys
    sys.modules.pop("my_rewards", None)


def _groups(*texts_per_prompt):
    return [[Completion(g, [{"role": "user", "content": f"q{g}"}], [1], [2], t, 0) for t in texts]
            for g, texts in enumerate(texts_per_prompt)]


def test_score_function_is_called_once_per_response(user_module):
    model = FunctionPreference("my_rewards:length", "score", sharpness=2.0, search_path=user_module)
    import my_rewards
    matrices, stats = preference_matrices(model, _groups(["a", "bbb", "cc", "dddd"], ["x", "yy"]))
    assert stats.calls == 6 == len(my_rewards.calls)  # K per group, not K(K-1)/2
    assert my_rewards.calls[0][0] == [{"role": "user", "content": "q0"}]  # the chat record as the data holds it
    m = matrices[0]
    assert m[1, 0] == pytest.approx(1 / (1 + math.exp(-2.0 * (3 - 1))))
    np.testing.assert_allclose(m + m.T, 1.0)


def test_pairwise_function_asks_each_pair_once(user_module):
    model = FunctionPreference("my_rewards:prefer_first_alphabetically", "pairwise", search_path=user_module)
    matrices, stats = preference_matrices(model, _groups(["a", "b", "c"]))
    assert stats.calls == 3
    assert matrices[0][0, 2] == pytest.approx(0.9) and matrices[0][2, 0] == pytest.approx(0.1)


def test_bad_values_are_rejected_counted_and_drop_only_their_group(user_module, capsys):
    model = FunctionPreference("my_rewards:picky", "score", search_path=user_module)
    matrices, _ = preference_matrices(model, _groups(["ok", "boom"], ["ok", "nan"], ["ok", "fine"]))
    assert [valid_matrix(m) for m in matrices] == [False, False, True]
    assert model.rejected == 2
    err = capsys.readouterr().err
    assert "raised RuntimeError: cannot score this" in err and "returned nan" in err
    pairwise = FunctionPreference("my_rewards:prefer_first_alphabetically", "pairwise", search_path=user_module)
    assert math.isnan(pairwise.probabilities(["x"], ["bad"], ["c"])[0]) and pairwise.rejected == 1
    assert "not a probability in [0, 1]" in capsys.readouterr().err


def test_bradley_terry_is_stable_and_nan_aware():
    assert bradley_terry(1.0, 1000.0, 0.0) == 1.0 and bradley_terry(1.0, 0.0, 1000.0) == 0.0
    assert math.isnan(bradley_terry(1.0, float("nan"), 0.0))


@pytest.mark.parametrize("spec, message", [
    ("my_rewards", "must look like module:callable"),
    ("no_such_module_xyz:score", "module 'no_such_module_xyz' does not import"),
    ("my_rewards:missing", "has no attribute 'missing'"),
    ("my_rewards:calls", "is not callable"),
])
def test_import_errors_are_one_line(user_module, spec, message):
    with pytest.raises(ValueError, match=message):
        import_callable(spec, user_module)


def test_the_run_checks_the_function_before_starting(user_module):
    config = load_config(None, ["preference.kind=function", "preference.function=my_rewards:nope",
                                "policy.model_path=/m"])
    with pytest.raises(ConfigError, match="'preference.function' 'my_rewards:nope': module 'my_rewards' has no "
                                          "attribute 'nope'"):
        check_preference_function(config)
