"""The Values that GPU processors publish for what ``processFrame`` (or
``processFrameBatch``) returned:

* an image (an array, on the host by then): an NTNDArray with the frame's
  uniqueId, timestamps and attributes (:meth:`ResultValues.image_value`);
* a dict of scalars (or of arrays, for fields declared as ``"a" + code``):
  a structure ``{uniqueId, timeStamp, <keys>}``
  (:meth:`ResultValues.scalar_value`), typed by the processor's
  ``getOutputFieldTypes()`` when it declares them, else by the Python types
  of the values (:func:`code`).
"""
from __future__ import annotations

import numpy as np
from p4p import Type, Value

from .. import ntnda
from ..errors import FrameError

#: Python type of a dict result's value -> p4p type code (undeclared fields)
_SCALAR_CODES = ((bool, "?"), (int, "l"), (float, "d"), (str, "s"))


def scalar(v):
    """A Python scalar for a result value (a 0-d device array costs one small
    synchronizing copy)."""
    if hasattr(v, "item") and getattr(v, "ndim", None) == 0:   # numpy scalars too
        v = v.item()
    return v


def code(v) -> str:
    """p4p type code of an undeclared result field."""
    for kind, c in _SCALAR_CODES:
        if isinstance(v, kind):
            return c
    raise FrameError(f"processFrame returned a {type(v).__name__}; a dict result holds "
                     f"bool, int, float or str values")


def _field_code(pva_type) -> str:
    """p4p code of a declared field: a scalar type (pvapy constant or p4p
    code), or ``"a"`` + a scalar p4p code for an array (``"ad"``)."""
    if isinstance(pva_type, str) and len(pva_type) == 2 and pva_type[0] == "a":
        return "a" + ntnda.p4p_code(pva_type[1])
    return ntnda.p4p_code(pva_type)


def _structure(fields) -> Type:
    return Type([("uniqueId", "i"), ("timeStamp", ntnda.TIME_T)] + list(fields))


class ResultValues:
    """Builds a processor's output Values. ``field_types`` is its
    ``getOutputFieldTypes`` (asked each time: a processor may declare fields
    once configured); ``descriptor`` goes into published images."""

    def __init__(self, field_types, descriptor: str):
        self.field_types = field_types
        self.descriptor = descriptor
        self._declared = None      # (declared types, their structure)

    def output_type(self):
        """The scalar structure when fields are declared, else pvagpu's
        NTNDArray type (the exact type of the images published here: p4p
        posts only Values of the type a record was opened with)."""
        types = self.field_types()
        return self._declared_type(types) if types else ntnda.NTNDARRAY_TYPE

    def _declared_type(self, types: dict) -> Type:
        if self._declared is None:
            self._declared = _structure((str(k), _field_code(t)) for k, t in types.items())
        return self._declared

    def image_value(self, image: np.ndarray, frame) -> Value:
        mode = frame.color_mode if image.ndim == 3 else ntnda.ColorMode.MONO
        return ntnda.value_from_image(
            image, frame.unique_id, color_mode=mode, time_stamp=frame.time_stamp,
            data_time_stamp=frame.data_time_stamp, attributes=frame.attributes,
            descriptor=self.descriptor)

    def scalar_value(self, result: dict, frame) -> Value:
        scalars = {str(k): scalar(v) for k, v in result.items()}
        declared = self.field_types()
        if declared:
            vtype = self._declared_type(declared)
        else:
            vtype = _structure((k, code(v)) for k, v in scalars.items())
        value = Value(vtype, {"uniqueId": frame.unique_id,
                              "timeStamp": frame.time_stamp._asdict()})
        for k, v in scalars.items():
            if k in value:
                value[k] = v
        return value
