import numpy as np

from selfplay.rollout.records import Completion, PreferenceGroup, WeightBucket, decode, encode


def test_round_trip_of_records_and_arrays():
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "sort: b a"}]
    group = PreferenceGroup([Completion(3, "sort: b a", [1, 5, 7, 6], [6, 7], "a b", 4, finish_reason="length"),
                             Completion(3, chat, [1, 5], [6, 2], "a", 4)],
                            np.array([[0.5, 0.2], [0.8, 0.5]], dtype=np.float64))
    bucket = WeightBucket(version=2, index=0, count=1, payload=b"\x00\x01", meta=b"\x80", checksum="ab")
    back = decode(encode({"groups": [group], "bucket": bucket, "step": 9}))
    assert back["step"] == 9
    assert back["bucket"] == bucket
    g = back["groups"][0]
    assert g.completions == group.completions
    assert [c.finished for c in g.completions] == [False, True] and g.completions[1].prompt == chat
    assert g.matrix.dtype == np.float64 and g.matrix.shape == (2, 2) and g.matrix[0, 1] == 0.2


def test_arrays_keep_dtype_and_shape():
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    b = decode(encode(a))
    assert b.dtype == np.int32 and b.shape == (3, 4) and (a == b).all()
    b[0, 0] = 99  # decoded arrays are writable copies
