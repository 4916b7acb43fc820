"""preference.kind=reward_model: a Bradley-Terry reward model, any Hugging Face sequence classifier with ONE label
(what TRL's RewardTrainer and OpenRLHF train, and what Skywork-Reward or ArmoRM-style checkpoints publish).

r(x, y) is the classifier's logit at the last token of the conversation [x's messages, {assistant: y}] rendered
with the reward model's own chat template (without one: the text "{prompt}\\n{response}" with its special
tokens), and

    P(a > b | x) = sigmoid((r(x, a) - r(x, b)) / T),   T = preference.temperature.

It is score-based: each of a group's K responses is scored once (``preference.matrix`` derives every pair from
the scores with ``sharpness = 1 / T``), ``preference.batch_size`` sequences a forward pass.
"""

from __future__ import annotations

from selfplay.preference.function_model import bradley_terry
from selfplay.preference.sequence_classifier import SequenceClassifier, chat_messages
from selfplay.rollout.chat_rendering import prompt_text


class RewardModel:
    score_based = True

    def __init__(self, model_path: str, temperature: float = 1.0, batch_size: int = 16) -> None:
        self.classifier = SequenceClassifier(model_path, batch_size)
        self.sharpness = 1.0 / temperature

    def render(self, prompt, response: str) -> list[int]:
        """What the reward model reads for one response: token ids in its own vocabulary."""
        messages = chat_messages(prompt) + [{"role": "assistant", "content": response}]
        return self.classifier.render(messages, f"{prompt_text(prompt)}\n{response}")

    def scores(self, prompts: list, responses: list[str]) -> list[float]:
        """r(x_i, y_i) for every i, one forward row each."""
        sequences = [self.render(x, y) for x, y in zip(prompts, responses, strict=True)]
        return self.classifier.logits(sequences)[:, 0].tolist()

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        n = len(prompts)
        scores = self.scores(list(prompts) * 2, list(first) + list(second))
        return [bradley_terry(self.sharpness, scores[i], scores[n + i]) for i in range(n)]
