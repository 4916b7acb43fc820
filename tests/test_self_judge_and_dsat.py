import math

import numpy as np
import pytest

from selfplay.errors import InputError
from selfplay.orchestration.loop.experience import valid_matrix
from selfplay.preference.self_judge import judge_matrix, judge_pairs, verdict_probability
from selfplay.rollout.records import Completion
from selfplay.tasks.dsat import load_wildfeedback_jsonl, synthetic_sorting_dsat


def _group(texts):
    return [Completion(0, "sort: b a", [1], [2], t, 0) for t in texts]


def test_judge_prompts_show_both_orders():
    texts, where = judge_pairs("{prompt} | {a} | {b}", [_group(["x", "y", "z"])])
    assert where == [(0, 0, 1), (0, 0, 2), (0, 1, 2)]
    assert texts[:2] == ["sort: b a | x | y", "sort: b a | y | x"]


def test_judge_matrix_averages_both_orders():
    groups = [_group(["x", "y"])]
    # order (x, y): P(A) = 0.8; order (y, x): P(A) = 0.4 -> strength of x = (0.8 + 0.6) / 2 = 0.7
    logprobs = [[math.log(0.8), math.log(0.2)], [math.log(0.4), math.log(0.6)]]
    m = judge_matrix(groups, [(0, 0, 1)], logprobs)[0]
    np.testing.assert_allclose(m, [[0.5, 0.7], [0.3, 0.5]])
    assert verdict_probability(math.log(0.3), math.log(0.1)) == pytest.approx(0.75)


def test_invalid_preferences_are_detected():
    assert valid_matrix(np.array([[0.5, 1.0], [0.0, 0.5]]))
    assert not valid_matrix(np.array([[0.5, np.nan], [0.5, 0.5]]))
    assert not valid_matrix(np.array([[0.5, 1.2], [-0.2, 0.5]]))


def test_wildfeedback_rows(tmp_path):
    path = tmp_path / "wf.jsonl"
    path.write_text(
        '{"prompt": [{"role": "user", "content": "hi"}], "rejected": "bad", "user_preference": ["be nicer"]}\n'
        '{"prompt": "q", "rejected": [{"role": "assistant", "content": "r"}], "user_preference": "c"}\n')
    rows = load_wildfeedback_jsonl(path)
    assert rows[0].prompt == [{"role": "user", "content": "hi"}] and rows[0].complaint == "be nicer"
    assert rows[1].rejected == "r" and rows[1].prompt == [{"role": "user", "content": "q"}]


@pytest.mark.parametrize("line, message", [
    ('{"prompt": "q", "user_preference": "c"}', "missing 'rejected'"),
    ('{"prompt": [{"content": "x"}], "rejected": "r", "user_preference": "c"}', "'prompt' must be"),
    ('{"prompt": "q", "rejected": 3, "user_preference": "c"}', "'rejected' must be"),
    ('not json', "not valid JSON"),
])
def test_bad_rows_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "wf.jsonl"
    path.write_text('{"prompt": "q", "rejected": "r", "user_preference": "c"}\n' + line + "\n")
    with pytest.raises(InputError, match=f"wf.jsonl:2: .*{message}"):
        load_wildfeedback_jsonl(path)


def test_synthetic_dsat_for_the_sorting_task():
    rows = synthetic_sorting_dsat(["sort: b d o a"])
    assert rows[0].rejected == "o d b a" and rows[0].prompt[0]["content"] == "sort: b d o a"
