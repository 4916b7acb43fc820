from selfplay.orchestration.loop.prompt_stream import PromptStream


def test_each_epoch_is_a_permutation():
    s = PromptStream(5, seed=1)
    first, second = s.take(5), s.take(5)
    assert sorted(first) == sorted(second) == list(range(5))
    assert s.epoch == 1


def test_state_restores_the_position():
    s = PromptStream(7, seed=2)
    s.take(9)
    resumed = PromptStream.from_state(s.state())
    assert resumed.take(20) == s.take(20)
