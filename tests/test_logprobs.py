import pytest
import torch

from selfplay.learner.logprobs import linear_head_on_last_hidden, pad_sequences, response_logprobs, token_logprobs


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


def _tiny_llama(tied: bool, **config):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, tie_word_embeddings=tied, pad_token_id=0,
        **config))


def _logprobs_and_grads(model, batch, reduction, **chunking):
    """Log-probs of ``batch`` and the gradients of a random combination of them."""
    model.zero_grad()
    logps = response_logprobs(model, *batch, reduction, **chunking)
    (logps * torch.linspace(-1.0, 2.0, len(logps))).sum().backward()
    return logps.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


BATCH = pad_sequences([[1, 5, 6], [1, 7], [1, 8, 9, 10, 11]],  # responses of 4, 7 and 1 tokens: 12 positions
                      [[12, 13, 14, 15], [16, 17, 18, 19, 20, 21, 22], [23]], pad_id=0)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("chunking", [dict(chunk_tokens=5), dict(chunk_tokens=1), dict(chunk_tokens=4, num_chunks=20)])
def test_chunked_head_equals_full_logits(tied, reduction, chunking):
    model = _tiny_llama(tied)
    assert linear_head_on_last_hidden(model) and (model.lm_head.weight is model.model.embed_tokens.weight) == tied
    expected, expected_grads = _logprobs_and_grads(model, BATCH, reduction, chunk_tokens=None)
    got, grads = _logprobs_and_grads(model, BATCH, reduction, **chunking)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], atol=1e-5, rtol=0, msg=name)


def test_chunked_head_masks_padding_and_prompts():
    model = _tiny_llama(tied=False)
    with torch.no_grad():
        tokens = token_logprobs(model, *BATCH, chunk_tokens=3)
        assert (tokens[BATCH[2] == 0] == 0).all() and (tokens[BATCH[2] == 1] < 0).all()
        # each padded row as if it were alone: padding changes nothing
        prompts, responses = [[1, 5, 6], [1, 7], [1, 8, 9, 10, 11]], [[12, 13, 14, 15], [16, 17, 18], [23]]
        together = response_logprobs(model, *pad_sequences(prompts, responses, pad_id=0), chunk_tokens=3)
        alone = torch.cat([response_logprobs(model, *pad_sequences([p], [r], pad_id=0), chunk_tokens=3)
                           for p, r in zip(prompts, responses)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)


def test_heads_that_are_not_a_plain_linear_take_the_full_logits_path():
    assert not linear_head_on_last_hidden(TableModel(torch.zeros(4, 4)))
    assert not linear_head_on_last_hidden(_tiny_llama(False, final_logit_softcapping=30.0))
    assert not linear_head_on_last_hidden(_tiny_llama(False, logit_scale=0.5))
    assert linear_head_on_last_hidden(_tiny_llama(False, final_logit_softcapping=None))
