"""The preference-model contract: batched P(a > b | prompt)."""

from __future__ import annotations

from typing import Protocol


class PreferenceModel(Protocol):
    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        """P(first[i] is preferred to second[i] | prompts[i]) for every i, each in [0, 1] (NaN: rejected).
        A prompt is the record as the data holds it: a string or a chat."""
        ...


class ScoreModel(PreferenceModel, Protocol):
    """A Bradley-Terry model: one score per response, P(a > b) = sigmoid(sharpness (s_a - s_b))."""
    score_based: bool
    sharpness: float

    def scores(self, prompts: list, responses: list[str]) -> list[float]:
        ...


class OrderAveragedModel(PreferenceModel, Protocol):
    """A judge that reads a pair in an order (pairwise classifier, LLM judge), asked in both:
    P(a > b) = (f(a, b) + 1 - f(b, a)) / 2."""
    order_averaged: bool

    def both_orders(self, prompts: list, first: list[str], second: list[str]) -> tuple[list[float], list[bool]]:
        """P(first[i] > second[i] | prompts[i]), and whether the two orders disagreed on the winner."""
        ...


def build_preference_model(kind: str, **options) -> PreferenceModel:
    """The model of ``kind`` (``preference.kind``); ``options`` come from the preference config, with
    ``model_path`` already resolved to a local directory and ``search_path`` the run's working directory."""
    if kind == "sorting":
        from selfplay.preference.sorting_judge import SortingJudge
        return SortingJudge(options["sharpness"], options["alphabet_size"])
    if kind == "function":
        from selfplay.preference.function_model import FunctionPreference
        return FunctionPreference(options["function"], options["function_kind"], options["sharpness"],
                                  options.get("search_path"))
    if kind == "reward_model":
        from selfplay.preference.reward_model import RewardModel
        return RewardModel(options["model_path"], options.get("temperature", 1.0), options.get("batch_size", 16))
    if kind == "pairwise":
        from selfplay.preference.pairwise_model import PairwiseClassifier
        return PairwiseClassifier(options["model_path"], options["pairwise_template"], options.get("batch_size", 16))
    if kind == "judge":
        from selfplay.preference.llm_judge import load_judge
        return load_judge(options["model_path"], options["judge_template"], options["verdict_a"],
                          options["verdict_b"], options["engine_options"])
    if kind == "game":
        from selfplay.preference.games import GamePreferenceModel, game_from_payoff
        return GamePreferenceModel(game_from_payoff(options["strategies"], options["payoff"]))
    if kind == "python":
        from selfplay.preference.python_model import PythonPreference
        return PythonPreference(options["class_path"], options.get("search_path"))
    if kind == "remote":
        from selfplay.preference.remote_model import connect
        return connect(options["url"], options["token_env"], options.get("timeout_s", 60.0),
                       options.get("retry_seconds", 300.0), options.get("token"))
    raise ValueError(f"unknown preference model {kind!r} (valid: sorting, function, reward_model, pairwise, judge, "
                     "python, game, remote)")
