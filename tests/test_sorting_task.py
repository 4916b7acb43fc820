import pytest

from selfplay.tasks import sorting


def test_prompts_are_seeded():
    a = sorting.make_prompts(5, seed=1)
    assert a == sorting.make_prompts(5, seed=1)
    assert a != sorting.make_prompts(5, seed=2)
    assert all(p.startswith("sort: ") and len(p.split()) == 7 for p in a)


def test_score_hand_computed():
    prompt = "sort: c a b"  # target a b c, alphabet of 16 -> largest distance 15
    assert sorting.score(prompt, "a b c") == 1.0
    assert sorting.score(prompt, "a b c d e") == 1.0  # trailing words ignored
    # distances: |c-a|=2, |b-b|=0, |a-c|=2 -> 1 - (4/15)/3
    assert sorting.score(prompt, "c b a") == pytest.approx(1 - 4 / 45)
    # missing and non-letter words cost the largest distance
    assert sorting.score(prompt, "a") == pytest.approx(1 - 2 / 3)
    assert sorting.score(prompt, "a <unk> c") == pytest.approx(1 - 1 / 3)


def test_not_a_sorting_prompt():
    with pytest.raises(ValueError, match="not a sorting prompt"):
        sorting.score("hello there", "a")
