"""Flat buckets and their metadata: the one packing format of every weight transport."""

import torch

from selfplay.rollout.transport.buckets import (ALIGN, bytes_to_tensor, decode_meta, encode_meta, iter_flat_buckets,
                                       tensor_to_bytes, unflatten)
from selfplay.rollout.weights_digest import weights_digest


def mixed_tensors():
    """Every kind of tensor a push meets: dtypes, 0-dim, empty, boolean, non-contiguous, larger than a bucket."""
    g = torch.Generator().manual_seed(0)
    return [
        ("embed.weight", torch.randn(32, 16, generator=g)),
        ("norm.weight", torch.randn(16, generator=g).to(torch.bfloat16)),
        ("step", torch.tensor(7, dtype=torch.int64)),  # 0-dim
        ("empty", torch.zeros(0, 3)),
        ("mask", torch.rand(5, generator=g) > 0.5),
        ("transposed", torch.randn(8, 4, generator=g).t()),  # not contiguous
        ("half", torch.randn(3, 3, generator=g).to(torch.float16)),
        ("big", torch.randn(64, 64, generator=g)),  # 16 KiB: larger than a bucket
    ]


def _bits(t):
    return t.contiguous().reshape(-1).view(torch.uint8)


def test_flatten_unflatten_is_bit_identical_and_respects_bucket_size():
    tensors = mixed_tensors()
    buckets = list(iter_flat_buckets(tensors, version=3, bucket_bytes=4096))
    assert [b.index for b in buckets] == list(range(len(buckets))) and all(b.version == 3 for b in buckets)
    back = []
    for bucket in buckets:
        assert all(e.offset % ALIGN == 0 for e in bucket.entries)
        if len(bucket.entries) > 1:
            assert bucket.nbytes <= 4096
        back += unflatten(bucket.buffer, bucket.entries)
    assert [n for n, _ in back] == [n for n, _ in tensors]
    assert [e.name for e in buckets[-1].entries] == ["big"]  # a larger tensor gets a bucket of its own
    for (name, t), (_, r) in zip(tensors, back):
        assert r.dtype == t.dtype and r.shape == t.shape, name
        assert torch.equal(_bits(r), _bits(t)), name
    assert weights_digest(back) == weights_digest(tensors)


def test_tensors_fill_a_bucket_in_order_up_to_its_size():
    g = torch.Generator().manual_seed(0)
    tensors = [("a.weight", torch.randn(64, 64, generator=g)), ("b.bias", torch.randn(64, generator=g)),
               ("c.weight", torch.randn(128, 64, generator=g))]
    buckets = list(iter_flat_buckets(tensors, version=5, bucket_bytes=64 * 64 * 4 + 64 * 4))
    assert [[e.name for e in b.entries] for b in buckets] == [["a.weight", "b.bias"], ["c.weight"]]
    assert all(b.version == 5 for b in buckets)
    back = dict(x for b in buckets for x in unflatten(b.buffer, b.entries))
    for name, t in tensors:
        assert torch.equal(back[name], t)
    assert weights_digest(back.items()) == weights_digest(tensors)


def test_metadata_round_trips_through_a_uint8_tensor():
    bucket = next(iter_flat_buckets(mixed_tensors(), version=11, bucket_bytes=1 << 20))
    wire = bytes_to_tensor(encode_meta(bucket))
    assert wire.dtype == torch.uint8
    version, index, nbytes, entries = decode_meta(tensor_to_bytes(wire))
    assert (version, index, nbytes) == (11, 0, bucket.nbytes)
    assert entries == bucket.entries
    assert [e.dtype for e in entries][:3] == ["float32", "bfloat16", "int64"]


def test_each_tensor_is_copied_before_the_next_is_asked_for():
    """A ZeRO-3 source hands out a tensor valid only until the next one: the packer must copy at once."""
    scratch = torch.zeros(10)

    def ephemeral():
        for i in range(6):
            scratch.fill_(float(i))
            yield f"p{i}", scratch
        scratch.fill_(-1.0)

    buckets = list(iter_flat_buckets(ephemeral(), version=1, bucket_bytes=256))
    values = [t[0].item() for b in buckets for _, t in unflatten(b.buffer, b.entries)]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_reused_buffers_alternate():
    tensors = [(f"t{i}", torch.full((64,), float(i))) for i in range(5)]  # 256 B each, one per bucket
    seen = []
    for bucket in iter_flat_buckets(tensors, version=1, bucket_bytes=256, reuse_buffers=2):
        seen.append(bucket.buffer.data_ptr())
        (_, t), = unflatten(bucket.buffer, bucket.entries)
        assert t[0].item() == float(bucket.index)  # read before the buffer comes round again
    assert seen[0] == seen[2] == seen[4] and seen[1] == seen[3] and seen[0] != seen[1]
    pool = []  # kept by the caller: the next push packs into the same memory
    first = [b.buffer.data_ptr() for b in iter_flat_buckets(tensors, 1, 256, reuse_buffers=2, pool=pool)]
    again = [b.buffer.data_ptr() for b in iter_flat_buckets(tensors, 2, 256, reuse_buffers=2, pool=pool)]
    assert len(pool) == 2 and first == again
