"""Records that cross process boundaries, and their msgpack codec.

Plain dataclasses; numpy arrays go on the wire as raw bytes + dtype + shape so a batch can be spilled
to disk, sent to a remote preference service, or replayed after a resume without pickle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np


@dataclass
class SamplingSpec:
    """What a rollout worker needs to know to sample (engine-independent)."""
    n: int
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 16
    ignore_eos: bool = False
    seed: int | None = None
    stop: list[str] = field(default_factory=list)  # strings that end a response, besides the EOS ids


@dataclass
class Completion:
    """One sampled response to one prompt, tagged with the policy version that produced it. ``prompt`` is the
    record as the data holds it (a string or a chat), ``prompt_token_ids`` what the engine was given."""
    prompt_index: int
    prompt: Any
    prompt_token_ids: list[int]
    response_token_ids: list[int]
    response_text: str
    policy_version: int
    finish_reason: str = "stop"  # "stop": an EOS id or stop string ended it; "length": cut at max_tokens

    @property
    def finished(self) -> bool:
        return self.finish_reason == "stop"


@dataclass
class PreferenceGroup:
    """K responses to one prompt and their K x K preference matrix P[i, j] = P(y_i > y_j | x).
    ``judge_examples`` (OSP's judge warm-up): (judge prompt token ids, P(the first shown is better)) for the
    judged presentations of this group's pairs, labelled by the preference model."""
    completions: list[Completion]
    matrix: np.ndarray
    judge_examples: list = field(default_factory=list)

    @property
    def k(self) -> int:
        return len(self.completions)


@dataclass
class WeightBucket:
    """Bucket ``index`` of ``count`` of a versioned weight push, as bytes (the object-store transport):
    ``payload`` is the flat buffer and ``meta`` its metadata (``rollout.transport.buckets``), ``checksum``
    (xxh3-128) covers both."""
    version: int
    index: int
    count: int
    payload: bytes
    meta: bytes
    checksum: str = ""


_RECORD_TYPES = {cls.__name__: cls for cls in (SamplingSpec, Completion, PreferenceGroup, WeightBucket)}


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__nd__": True, "dtype": obj.dtype.str, "shape": list(obj.shape),
                "data": np.ascontiguousarray(obj).tobytes()}
    if dataclasses.is_dataclass(obj) and type(obj).__name__ in _RECORD_TYPES:
        return {"__record__": type(obj).__name__,
                "fields": {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}}
    raise TypeError(f"cannot encode {type(obj).__name__} as a selfplay record")


def _object_hook(obj: dict) -> Any:
    if obj.get("__nd__"):
        return np.frombuffer(obj["data"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"]).copy()
    if "__record__" in obj:
        cls = _RECORD_TYPES[obj["__record__"]]
        return cls(**obj["fields"])
    return obj


def encode(value: Any) -> bytes:
    """Records, lists and dicts of records, numpy arrays and plain values -> msgpack bytes."""
    return msgpack.packb(value, default=_default, use_bin_type=True)


def decode(data: bytes) -> Any:
    return msgpack.unpackb(data, object_hook=_object_hook, raw=False, strict_map_key=False)
