"""preference.kind=game and the built-in game task: the live loop plays an intransitive game, and the exploitability
of the policy's strategy distribution is measured at every evaluation on the real system (Ray, an engine, the
preference service, DeepSpeed), not only on exact games."""

import json

import numpy as np
import pytest

from selfplay.orchestration.config.loading import load_config
from selfplay.orchestration.run.inputs import load_run_inputs
from selfplay.preference.games import GamePreferenceModel, game_from_payoff, intransitive_game, nash_equilibrium
from selfplay.tasks import game
from selfplay.errors import ConfigError
from tests.conftest import run_in_process

RPS = intransitive_game()


def test_exploitability_of_responses_counts_moves_and_non_moves():
    model = GamePreferenceModel(RPS)
    assert model.exploitability(["rock"] * 10) == pytest.approx(0.4)  # paper beats rock with 0.9
    assert model.exploitability(["Scissors! and more", "scissors"]) == pytest.approx(0.1)
    assert model.exploitability(["", "lizard", "sort:"]) == pytest.approx(0.5)  # no move loses to every move
    nash = nash_equilibrium(RPS)  # (2/7, 1/7, 4/7): 7 responses playing it exactly
    moves = ["rock"] * 2 + ["paper"] + ["scissors"] * 4
    np.testing.assert_allclose(model.strategy_shares(moves)[0], nash)
    assert model.exploitability(moves) == pytest.approx(0.0, abs=1e-12)
    # one non-move in eight: the best move gains its whole share (it beats the non-move with P = 1)
    assert model.exploitability(moves + ["pass"]) == pytest.approx(0.5 * 7 / 8 + 1 / 8 - 0.5)


def test_config_game_keys_are_checked_and_the_embedded_game_gets_its_preset():
    config = load_config(None, ["task.name=game", "preference.kind=game"])
    assert config.rollout.max_tokens == 1 and config.eval.samples_per_prompt == 32
    assert "rollout.max_tokens=1" in config.preset_keys
    assert game_from_payoff(config.preference.strategies, config.preference.payoff).matrix.tolist() == \
        RPS.matrix.tolist()
    with pytest.raises(ConfigError, match="'task.name' game needs preference.kind=game"):
        load_config(None, ["task.name=game"])
    with pytest.raises(ConfigError, match=r"'preference.payoff'.*3 x 3"):
        load_config(None, ["preference.kind=game", "preference.payoff=[[0.5,0.2],[0.8,0.5]]"])
    with pytest.raises(ConfigError, match=r"'preference.payoff'.*P \+ P.T = 1"):
        load_config(None, ["preference.kind=game", "preference.strategies=[a,b]",
                           "preference.payoff=[[0.5,0.2],[0.2,0.5]]"])
    with pytest.raises(ConfigError, match="'preference.payoff' expects a list of rows of numbers"):
        load_config(None, ["preference.kind=game", "preference.payoff=3"])
    # YAML 1.1 reads 3e-4 as a string; a learning rate written that way is still a number
    assert load_config(None, ["learner.lr=3e-4"]).learner.lr == pytest.approx(3e-4)


def test_game_prompts_and_the_embedded_vocabulary_hold_every_strategy():
    config = load_config(None, ["task.name=game", "preference.kind=game", "task.num_train_prompts=50"])
    inputs = load_run_inputs(config)
    tokenizer = inputs.renderer.tokenizer
    moves = tokenizer(["rock", "paper", "scissors"], add_special_tokens=False)["input_ids"]
    assert all(len(ids) == 1 and ids[0] != tokenizer.unk_token_id for ids in moves)  # one token a move
    assert len(inputs.train.records) == 50 and all(r.split()[0] == game.PROMPT_PREFIX for r in inputs.train.records)
    assert game.make_prompts(5, 1, ["a", "b"]) == game.make_prompts(5, 1, ["a", "b"])


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["nash_md", "online_ipo"])
def test_live_game_drives_exploitability_to_the_equilibrium(tmp_path, ray_session_per_module, algorithm):
    # A linear learning-rate decay lets the last iterate settle (a constant rate keeps it circling at ~0.05);
    # tau = 0.05 puts the regularised equilibrium ~0.03 from Nash. Online IPO's run also spreads its groups
    # over two preference replicas.
    run_dir, summary = run_in_process(
        tmp_path, algorithm, "task.name=game", "preference.kind=game", f"algorithm.name={algorithm}",
        "algorithm.nash_md.tau=0.05", "algorithm.ipo.tau=0.05", "learner.lr=1e-3", "learner.lr_schedule=linear",
        "rollout.prompts_per_step=64", "run.total_steps=200", "eval.every_steps=50",
        f"preference.num_replicas={2 if algorithm == 'online_ipo' else 1}")
    print(f"\n{algorithm}: exploitability {summary['initial_exploitability']:.3f} -> "
          f"{summary['final_exploitability']:.3f}")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    logged = [r["step"] for r in rows if "exploitability" in r]
    assert logged[:3] == [50, 100, 150] and logged[-1] == 200  # at every evaluation
    assert summary["initial_exploitability"] >= 0.3
    assert summary["final_exploitability"] <= 0.05
    lrs = [r["lr"] for r in rows if "lr" in r]
    assert lrs[0] > lrs[len(lrs) // 2] > lrs[-1] >= 0  # the decay reached the learner
    if algorithm == "online_ipo":
        assert len(summary["preference_calls_per_replica"]) == 2
        assert min(summary["preference_calls_per_replica"]) > 0  # both replicas took groups
