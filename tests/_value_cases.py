"""Shared by the crypto and serialiser tests: an NTNDArray with every kind
of attribute, and a bit-for-bit comparison of two Values."""
import numpy as np
from p4p import Value

from pvagpu import ntnda


def same(a: Value, b: Value) -> bool:
    """Bit for bit: type (with IDs), every field, variant types, arrays."""
    if a.type().aspy() != b.type().aspy() or a.tostr() != b.tostr():
        return False
    pa, pb = a["value"], b["value"]
    return pa.dtype == pb.dtype and pa.tobytes() == pb.tobytes()


def frame(dtype=np.uint16, shape=(6, 8), uid=7, codec="", color_mode=None, seed=0):
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        img = rng.standard_normal(shape).astype(dt)
        img.flat[0] = np.nan
    elif dt.kind == "b":
        img = rng.integers(0, 2, shape).astype(bool)
    else:
        info = np.iinfo(dt)
        img = rng.integers(info.min, info.max, shape, dtype=dt, endpoint=True)
    attrs = [{"name": "Exposure", "value": ("f", 0.25), "descriptor": "s"},
             {"name": "Counter", "value": ("L", 2 ** 63 + 5), "tags": ["a", "b"]},
             {"name": "Small", "value": ("b", -3), "source": "drv", "sourceType": 1},
             {"name": "Text", "value": ("s", "quote\" and\nnewline \u00e9")},
             {"name": "Double", "value": ("d", -0.0)},
             {"name": "Undefined"}]
    return ntnda.value_from_image(
        img, uid, codec=codec, color_mode=color_mode, attributes=attrs, descriptor="det",
        time_stamp=ntnda.TimeStamp(1700000000, 123456789, 4),
        data_time_stamp=ntnda.TimeStamp(1700000001, 5, 6))
