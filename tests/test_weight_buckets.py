import dataclasses

import pytest
import torch

from rollout.weight_buckets import WeightsDigest, iter_bucket_tensors, pack_buckets, unpack_bucket, weights_digest


def _tensors():
    g = torch.Generator().manual_seed(0)
    return [("a.weight", torch.randn(64, 64, generator=g)), ("b.bias", torch.randn(64, generator=g)),
            ("c.weight", torch.randn(128, 64, generator=g))]


def test_buckets_respect_size_and_round_trip():
    tensors = _tensors()
    buckets = pack_buckets(tensors, version=5, bucket_bytes=64 * 64 * 4 + 64 * 4)
    assert [b.names for b in buckets] == [["a.weight", "b.bias"], ["c.weight"]]
    assert all(b.version == 5 and b.count == 2 for b in buckets)
    back = dict(iter_bucket_tensors(b.payload for b in buckets))
    for name, t in tensors:
        assert torch.equal(back[name], t)
    assert weights_digest(back.items()) == weights_digest(tensors)


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


def test_corrupt_bucket_is_refused():
    bucket = pack_buckets(_tensors(), version=1, bucket_bytes=1 << 30)[0]
    bad = dataclasses.replace(bucket, payload=bucket.payload[:-1] + b"\x00")
    with pytest.raises(ValueError, match="corrupt"):
        unpack_bucket(bad)
