"""preference.kind=pairwise: a Hugging Face sequence classifier that reads a prompt and two responses and says
how likely the first is better (a PairRM-style pairwise reward model).

It reads ``preference.pairwise_template`` filled with the prompt's text, a and b, as ONE user turn through the
classifier's own chat template (plain text with its special tokens when it has none), and outputs

    f(a, b) = sigmoid(logit)       with one label,
    f(a, b) = softmax(logits)[0]   with two labels: label 0 is "a is better", label 1 "b is better".

A classifier's verdict depends on the order it reads the pair in, so each pair is asked in both orders and

    P(a > b | x) = (f(a, b) + 1 - f(b, a)) / 2,

which makes P(a > b) + P(b > a) = 1 exactly and P(a > a) = 1/2 (preference/self_judge.py's ``ask_both_orders``,
which also says whether the two orders disagreed: the service logs that share as swap inconsistency).
"""

from __future__ import annotations

import torch

from selfplay.preference.self_judge import ask_both_orders
from selfplay.preference.sequence_classifier import SequenceClassifier
from selfplay.rollout.chat_rendering import prompt_text


class PairwiseClassifier:
    score_based = False
    order_averaged = True

    def __init__(self, model_path: str, template: str, batch_size: int = 16) -> None:
        self.classifier = SequenceClassifier(model_path, batch_size)
        self.template = template

    def render(self, prompt, a: str, b: str) -> list[int]:
        """What the classifier reads for the pair (a, b) in this order."""
        text = self.template.format(prompt=prompt_text(prompt), a=a, b=b)
        return self.classifier.render([{"role": "user", "content": text}], text)

    def first_wins(self, prompts: list, first: list[str], second: list[str]) -> torch.Tensor:
        """f(first_i, second_i): the classifier's probability that the response it reads first is better."""
        logits = self.classifier.logits([self.render(x, a, b) for x, a, b in zip(prompts, first, second,
                                                                                  strict=True)])
        if self.classifier.num_labels == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=-1)[:, 0]

    def both_orders(self, prompts: list, first: list[str], second: list[str]):
        return ask_both_orders(self.first_wins, prompts, first, second)

    def probabilities(self, prompts: list, first: list[str], second: list[str]) -> list[float]:
        return self.both_orders(prompts, first, second)[0].tolist()
