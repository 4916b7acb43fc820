import torch

from selfplay.rollout.weights_digest import WeightsDigest, weights_digest


def _tensors():
    g = torch.Generator().manual_seed(0)
    return [("a.weight", torch.randn(64, 64, generator=g)), ("b.bias", torch.randn(64, generator=g)),
            ("c.weight", torch.randn(128, 64, generator=g))]


def test_digest_sees_one_changed_value_and_ignores_order():
    tensors = _tensors()
    assert weights_digest(list(reversed(tensors))) == weights_digest(tensors)
    changed = [(n, t.clone()) for n, t in tensors]
    changed[2][1][0, 0] += 1e-6
    assert weights_digest(changed) != weights_digest(tensors)
    as_bf16 = [(n, t.to(torch.bfloat16)) for n, t in tensors]
    assert weights_digest(as_bf16) != weights_digest(tensors)  # the dtype is part of it


def test_incremental_digest_keeps_no_tensor():
    digest = WeightsDigest()
    for name, tensor in reversed(_tensors()):
        buffer = tensor.clone()
        digest.add(name, buffer)
        buffer.zero_()  # a receiver reuses its buffers: what was hashed must not change with them
    assert digest.hexdigest() == weights_digest(_tensors())
