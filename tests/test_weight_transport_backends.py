"""The transport registry, the torch.distributed backend choice, and the object-store backend's records (no Ray)."""

import dataclasses
import typing

import pytest
import torch

from selfplay.orchestration.config.schema import LearnerConfig
from selfplay.rollout.transport import build_receiver, build_sender, resolve_backend, transport_names
from selfplay.rollout.transport.base import DISTRIBUTED_BACKENDS
from selfplay.rollout.transport.buckets import decode_meta
from selfplay.rollout.transport.object_store import pack_records
from selfplay.rollout.weights_digest import weights_digest
from tests.test_weight_buckets import mixed_tensors as _tensors


def test_registry_names_and_unknown_backend():
    assert transport_names() == ["broadcast", "mixed", "object_store", "shared_memory"]
    assert build_sender("broadcast", bucket_bytes=1 << 20).streaming
    assert build_sender("shared_memory", bucket_bytes=1 << 20).streaming
    assert not build_sender("object_store", bucket_bytes=1 << 20).streaming
    assert not build_sender("mixed", bucket_bytes=1 << 20, local=[True, False]).streaming  # sends one list twice
    assert build_receiver("mixed").fetch(object()) is None  # the engine's host side fetches unconnected
    with pytest.raises(ValueError, match="unknown weight transport 'carrier_pigeon'"):
        build_receiver("carrier_pigeon")


def test_one_backend_choice_for_the_learner_and_the_broadcast():
    expected = "nccl" if torch.cuda.is_available() else "gloo"
    assert resolve_backend("auto") == resolve_backend() == expected
    assert resolve_backend("gloo") == "gloo" and resolve_backend("nccl") == "nccl"
    assert build_sender("broadcast", bucket_bytes=1 << 20).backend == expected
    assert build_sender("broadcast", bucket_bytes=1 << 20, backend="gloo").backend == "gloo"
    with pytest.raises(ValueError, match="unknown torch.distributed backend 'mpi'"):
        resolve_backend("mpi")
    with pytest.raises(ValueError, match="unknown torch.distributed backend 'mpi'"):
        build_sender("broadcast", bucket_bytes=1 << 20, backend="mpi")
    # learner.backend offers exactly the names the rule resolves
    hint = typing.get_type_hints(LearnerConfig)["backend"]
    assert typing.get_args(hint) == DISTRIBUTED_BACKENDS


def test_object_store_records_respect_bucket_size_and_count():
    g = torch.Generator().manual_seed(0)
    tensors = [("a.weight", torch.randn(64, 64, generator=g)), ("b.bias", torch.randn(64, generator=g)),
               ("c.weight", torch.randn(128, 64, generator=g))]
    records = pack_records(tensors, version=5, bucket_bytes=64 * 64 * 4 + 64 * 4)
    assert [[e.name for e in decode_meta(r.meta)[3]] for r in records] == [["a.weight", "b.bias"], ["c.weight"]]
    assert all(r.version == 5 and r.count == 2 for r in records)
    assert [r.index for r in records] == [0, 1]
    back = dict(build_receiver("object_store").receive(5, build_receiver("object_store").fetch(records)))
    for name, t in tensors:
        assert torch.equal(back[name], t)
    assert weights_digest(back.items()) == weights_digest(tensors)


def test_object_store_receiver_checks_version_and_completeness():
    tensors = _tensors()
    receiver = build_receiver("object_store")
    fetched = receiver.fetch(pack_records(tensors, version=4, bucket_bytes=2048))  # records, no Ray needed
    assert len(fetched) > 1
    received = list(receiver.receive(4, fetched))
    assert weights_digest(received) == weights_digest(tensors)
    with pytest.raises(ValueError, match="expected weight push version 5"):
        list(receiver.receive(5, fetched))
    with pytest.raises(ValueError, match="incomplete"):
        list(receiver.receive(4, fetched[1:]))


def test_corrupt_bucket_is_refused():
    receiver = build_receiver("object_store")
    record = pack_records(_tensors(), version=1, bucket_bytes=1 << 30)[0]
    bad = dataclasses.replace(record, payload=record.payload[:-1] + b"\x00")
    with pytest.raises(ValueError, match="corrupt"):
        list(receiver.receive(1, receiver.fetch([bad])))
    bad_meta = dataclasses.replace(record, meta=record.meta.replace(b"big", b"bog"))
    with pytest.raises(ValueError, match="corrupt"):
        list(receiver.receive(1, receiver.fetch([bad_meta])))


def test_tensor_parallel_engines_take_consecutive_receiver_ranks():
    from selfplay.actors.weight_transport import receiver_ranks

    assert receiver_ranks(3, 1) == [1, 2, 3]
    assert receiver_ranks(2, 4) == [1, 5]  # engine 0's workers are ranks 1-4, engine 1's 5-8; the learner is 0
