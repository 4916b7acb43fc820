"""Flat buckets and their metadata (the broadcast backend's wire format), and the transport registry."""

import pytest
import torch

from rollout.transport import build_receiver, build_sender, transport_names
from rollout.transport.buckets import (ALIGN, bytes_to_tensor, decode_meta, encode_meta, iter_flat_buckets,
                                       tensor_to_bytes, unflatten)
from rollout.weight_buckets import pack_buckets, weights_digest


def _tensors():
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
    tensors = _tensors()
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
    # weights_digest cannot hash 0-dim tensors (view(uint8) refuses them); real parameters have none.
    assert weights_digest([x for x in back if x[1].dim()]) == weights_digest([x for x in tensors if x[1].dim()])


def test_metadata_round_trips_through_a_uint8_tensor():
    bucket = next(iter_flat_buckets(_tensors(), version=11, bucket_bytes=1 << 20))
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


def test_registry_names_and_unknown_backend():
    assert transport_names() == ["broadcast", "object_store", "shared_memory"]
    assert build_sender("broadcast", bucket_bytes=1 << 20).streaming
    assert build_sender("shared_memory", bucket_bytes=1 << 20).streaming
    assert not build_sender("object_store", bucket_bytes=1 << 20).streaming
    with pytest.raises(ValueError, match="unknown weight transport 'carrier_pigeon'"):
        build_receiver("carrier_pigeon")


def test_object_store_receiver_checks_version_and_completeness():
    tensors = _tensors()
    receiver = build_receiver("object_store")
    fetched = receiver.fetch(pack_buckets(tensors, version=4, bucket_bytes=2048))  # records, no Ray needed
    assert len(fetched) > 1
    received = [x for x in receiver.receive(4, fetched) if x[1].dim()]
    assert weights_digest(received) == weights_digest([x for x in tensors if x[1].dim()])
    with pytest.raises(ValueError, match="expected weight push version 5"):
        list(receiver.receive(5, fetched))
    with pytest.raises(ValueError, match="incomplete"):
        list(receiver.receive(4, fetched[1:]))
