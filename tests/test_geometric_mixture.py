"""The two geometric-mixture samplers against exact enumeration on a tiny random trigram "model"."""

import torch

from selfplay.rollout.geometric_mixture import (all_sequences, effective_sample_size, exact_sequence_mixture,
                                       exact_token_mixture, mix_logits, mixture_weights,
                                       resample_sequence_mixture, sample_token_mixture, sequence_logps)

VOCAB, LENGTH, BETA = 4, 3, 0.5
PREFIX = torch.tensor([0, 1])


def _trigram(seed: int):
    # next-token logits from the last two tokens: enough context for the per-step normaliser Z_t to depend
    # on the prefix, which is what makes the token-level and sequence-level mixtures differ
    table = 1.5 * torch.randn(VOCAB, VOCAB, VOCAB, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lambda ids: table[ids[:, -2], ids[:, -1]]


POLICY, REF = _trigram(1), _trigram(2)


def _histogram(samples: torch.Tensor) -> torch.Tensor:
    codes = (samples * VOCAB ** torch.arange(samples.shape[1] - 1, -1, -1)).sum(dim=1)  # lexicographic index
    return torch.bincount(codes, minlength=VOCAB ** samples.shape[1]).double() / len(samples)


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def test_histogram_index_matches_enumeration_order():
    ys = all_sequences(VOCAB, LENGTH)
    assert torch.equal(_histogram(ys), torch.full((VOCAB ** LENGTH,), 1.0 / VOCAB ** LENGTH, dtype=torch.float64))


def test_mix_logits_hand_computed():
    mixed = mix_logits(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 4.0]), 0.25)
    assert torch.allclose(mixed, torch.tensor([1.5, 1.0]))


def test_token_and_sequence_mixtures_coincide_for_one_token():
    _, token = exact_token_mixture(POLICY, REF, PREFIX, 1, BETA)
    _, sequence = exact_sequence_mixture(POLICY, REF, PREFIX, 1, BETA)
    assert torch.allclose(token, sequence, atol=1e-12)


def test_exact_targets_differ_on_three_tokens():
    _, token = exact_token_mixture(POLICY, REF, PREFIX, LENGTH, BETA)
    _, sequence = exact_sequence_mixture(POLICY, REF, PREFIX, LENGTH, BETA)
    assert abs(float(token.sum()) - 1) < 1e-12 and abs(float(sequence.sum()) - 1) < 1e-12
    tv = _tv(token, sequence)
    print(f"\nTV(token-level mixture, sequence-level mixture), V={VOCAB} L={LENGTH} beta={BETA}: {tv:.4f}")
    assert tv > 0.05  # clearly different distributions, beyond the samplers' tolerance


def test_token_level_sampler_matches_exact_token_mixture():
    g = torch.Generator().manual_seed(0)
    samples = sample_token_mixture(POLICY, REF, PREFIX, LENGTH, BETA, n=20_000, generator=g)
    _, exact = exact_token_mixture(POLICY, REF, PREFIX, LENGTH, BETA)
    tv = _tv(_histogram(samples), exact)
    print(f"\nTV(token-level sampler 20k, exact token mixture): {tv:.4f}")
    assert tv < 0.05


def test_resampler_matches_exact_sequence_mixture():
    g = torch.Generator().manual_seed(0)
    draws, ess = [], []
    for _ in range(40):  # 40 candidate sets of 2000 policy samples, 500 draws from each
        candidates = sample_token_mixture(POLICY, REF, PREFIX, LENGTH, 0.0, n=2000, generator=g)  # beta 0: pi
        idx, e = resample_sequence_mixture(sequence_logps(POLICY, PREFIX, candidates),
                                           sequence_logps(REF, PREFIX, candidates), BETA, 500, generator=g)
        draws.append(candidates[idx])
        ess.append(e)
    _, exact = exact_sequence_mixture(POLICY, REF, PREFIX, LENGTH, BETA)
    _, token = exact_token_mixture(POLICY, REF, PREFIX, LENGTH, BETA)
    hist = _histogram(torch.cat(draws))
    tv = _tv(hist, exact)
    print(f"\nTV(resampler 40 sets x 2000 candidates -> 20k draws, exact sequence mixture): {tv:.4f}; "
          f"TV(same draws, exact token mixture): {_tv(hist, token):.4f}; "
          f"ESS mean {sum(ess) / len(ess):.0f}, min {min(ess):.0f} of 2000")
    assert tv < 0.05
    assert tv < _tv(hist, token)  # it targets the sequence-level mixture, not the token-level one
    assert all(1 <= e <= 2000 for e in ess)  # heavy-tailed weights: some sets fall far below the mean


def test_weights_hand_computed_and_ess():
    # candidates from pi: w ∝ exp(beta (log mu - log pi)) = exp(0.5 * (0, 2)) -> (1, e) / (1 + e)
    w = mixture_weights(torch.tensor([-1.0, -3.0]), torch.tensor([-1.0, -1.0]), 0.5)
    e = torch.exp(torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(w, torch.stack([1 / (1 + e), e / (1 + e)]))
    assert effective_sample_size(torch.full((4,), 0.25)) == 4.0
    assert abs(effective_sample_size(torch.tensor([1.0, 0.0])) - 1.0) < 1e-12
    # huge log-probs (summed over many tokens) stay finite
    w = mixture_weights(torch.tensor([-5000.0, -9000.0]), torch.tensor([-5000.0, -5000.0]), 1.0)
    assert torch.isfinite(w).all() and float(w[1]) == 1.0


def test_proposal_logps_correct_for_a_different_sampler():
    # candidates from q = mu itself: the weights must be pi^(1-beta) mu^beta / mu
    pi, mu = torch.tensor([-0.5, -2.0]), torch.tensor([-1.0, -0.2])
    w = mixture_weights(pi, mu, 0.3, proposal_logps=mu)
    expected = torch.softmax((0.7 * pi + 0.3 * mu - mu).double(), 0)
    assert torch.allclose(w, expected)


def _two_sharp_models(tmp_path):
    """Two tiny HF models (a policy and a reference), sharper than the random init so that the mixture is far
    from either model."""
    from transformers import AutoModelForCausalLM

    from selfplay.tasks.tiny_model import TinyModelSpec, build_tiny_model_dir

    models = [AutoModelForCausalLM.from_pretrained(build_tiny_model_dir(tmp_path / str(seed), TinyModelSpec(
        seed=seed, alphabet_size=4))).eval() for seed in (3, 4)]
    with torch.no_grad():
        for model in models:
            model.lm_head.weight.mul_(5.0)
    return models


def test_cached_batched_sampler_on_real_models_matches_exact_token_mixture(tmp_path):
    """The torch engine's sampler (HF models, KV caches, left-padded prompts of two lengths in one batch) draws
    the token-level mixture that enumeration gives for each prompt."""
    from selfplay.rollout.geometric_mixture import sample_token_mixture_cached

    models = _two_sharp_models(tmp_path)
    vocab = models[0].config.vocab_size
    prompts, length, n, beta, temperature = [[1, 5, 6], [1, 7]], 2, 20_000, 0.3, 0.8
    g = torch.Generator().manual_seed(0)
    drawn = sample_token_mixture_cached(*models, prompts, length, beta, n, pad_id=0, temperature=temperature,
                                        generator=g)
    assert drawn.shape == (2, n, length)

    def logits_fn(model):
        return lambda ids: model(input_ids=ids).logits[:, -1].double() / temperature

    for prompt, samples in zip(prompts, drawn):
        ys, exact = exact_token_mixture(logits_fn(models[0]), logits_fn(models[1]), torch.tensor(prompt), length,
                                        beta)
        codes = samples[:, 0] * vocab + samples[:, 1]
        hist = torch.bincount(codes, minlength=vocab ** length).double() / n
        tv = _tv(hist, exact)
        _, policy_only = exact_token_mixture(logits_fn(models[0]), logits_fn(models[1]), torch.tensor(prompt),
                                             length, 0.0)
        print(f"\nTV(cached sampler 20k, exact token mixture), prompt {prompt}: {tv:.4f}; "
              f"TV(same, the policy alone): {_tv(hist, policy_only):.4f}")
        assert tv < 0.05 and _tv(hist, policy_only) > 0.1


def test_policy_rows_decoded_beside_the_mixture_rows_follow_the_policy(tmp_path):
    """Nash-MD's policy sample and mixture opponent from one decoding loop: the policy's rows are the policy's
    token-level distribution, the mixture's rows the mixture's, each within 0.05 of enumeration."""
    from selfplay.rollout.geometric_mixture import sample_policy_and_mixture_cached

    models = _two_sharp_models(tmp_path)
    vocab = models[0].config.vocab_size
    prompts, length, n, beta = [[1, 5, 6], [1, 7]], 2, 20_000, 0.5
    from_policy, from_mixture = sample_policy_and_mixture_cached(*models, prompts, length, beta, n, n, pad_id=0,
                                                                 generator=torch.Generator().manual_seed(1))
    assert from_policy.shape == from_mixture.shape == (2, n, length)

    def logits_fn(model):
        return lambda ids: model(input_ids=ids).logits[:, -1].double()

    for prompt, policy_rows, mixture_rows in zip(prompts, from_policy, from_mixture):
        _, policy = exact_token_mixture(logits_fn(models[0]), logits_fn(models[1]), torch.tensor(prompt), length, 0.0)
        _, mixture = exact_token_mixture(logits_fn(models[0]), logits_fn(models[1]), torch.tensor(prompt), length,
                                         beta)
        hists = [torch.bincount(rows[:, 0] * vocab + rows[:, 1], minlength=vocab ** length).double() / n
                 for rows in (policy_rows, mixture_rows)]
        assert _tv(hists[0], policy) < 0.05 and _tv(hists[1], mixture) < 0.05
        assert _tv(hists[0], mixture) > 0.1  # the two kinds of rows are told apart


def test_plain_policy_sampling_without_a_reference_and_the_early_stop(tmp_path):
    """The torch engine's plain sampling: the same loop with no mixture rows and no reference model draws the
    policy's tempered token-level distribution; it stops as soon as every row has drawn a stop id."""
    from selfplay.rollout.geometric_mixture import sample_policy_and_mixture_cached

    policy = _two_sharp_models(tmp_path)[0]
    vocab = policy.config.vocab_size
    prompts, length, n, temperature = [[1, 5, 6], [1, 7]], 2, 20_000, 0.8
    from_policy, from_mixture = sample_policy_and_mixture_cached(policy, None, prompts, length, 0.0, 0, n, pad_id=0,
                                                                 temperature=temperature,
                                                                 generator=torch.Generator().manual_seed(2))
    assert from_policy.shape == (2, n, length) and from_mixture.shape == (2, 0, length)

    def logits_fn(ids):
        return policy(input_ids=ids).logits[:, -1].double() / temperature

    for prompt, rows in zip(prompts, from_policy):
        _, exact = exact_token_mixture(logits_fn, logits_fn, torch.tensor(prompt), length, 0.0)
        hist = torch.bincount(rows[:, 0] * vocab + rows[:, 1], minlength=vocab ** length).double() / n
        assert _tv(hist, exact) < 0.05

    everything_stops, _ = sample_policy_and_mixture_cached(policy, None, prompts, 5, 0.0, 0, 3, pad_id=0,
                                                           stop_ids=range(vocab))
    assert everything_stops.shape == (2, 3, 1)  # every row drew a stop id at the first step
    nothing_stops, _ = sample_policy_and_mixture_cached(policy, None, prompts, 5, 0.0, 0, 3, pad_id=0, stop_ids=[])
    assert nothing_stops.shape == (2, 3, 5)
