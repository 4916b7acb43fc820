import torch

from learner.logprobs import pad_sequences, response_logprobs


class TableModel(torch.nn.Module):
    """Logits depend only on the current token: a bigram table, so log-probs can be computed by hand."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()


def test_masks_mark_response_positions():
    ids, attention, mask = pad_sequences([[1, 2], [1]], [[3, 4], [5]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 4], [1, 5, 0, 0]]
    assert attention.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    # position t predicts token t + 1: row 0 predicts 3 (t=1) and 4 (t=2); row 1 predicts 5 (t=0)
    assert mask.tolist() == [[0, 1, 1], [1, 0, 0]]


def test_sum_and_mean_match_hand_computation():
    table = torch.log(torch.tensor([[0.25] * 4, [0.1, 0.2, 0.3, 0.4], [0.5, 0.2, 0.2, 0.1], [0.25] * 4]))
    ids, attention, mask = pad_sequences([[1]], [[2, 0]], pad_id=3)
    total = response_logprobs(TableModel(table), ids, attention, mask, "sum")
    expected = torch.log(torch.tensor(0.3)) + torch.log(torch.tensor(0.5))
    assert torch.allclose(total, expected.reshape(1))
    mean = response_logprobs(TableModel(table), ids, attention, mask, "mean")
    assert torch.allclose(mean, (expected / 2).reshape(1))
