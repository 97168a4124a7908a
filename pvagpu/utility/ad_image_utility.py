"""pvapy's AdImageUtility: area-detector images <-> NTNDArray Values.

The same names as pvapy's class: the colour-mode constants and map, the
data-type maps, ``reshapeNtNdArray``, ``getNtNdArrayDataFieldKey``,
``generateNtNdArray2D``, ``generateNtNdArray``, ``replaceNtNdArrayImage2D``
and ``getImageDimensions``. The methods that :class:`pvagpu.hpc.AdImageProcessor`
has are that class's (one implementation; unlike pvapy's they decode every
areaDetector codec and every colour mode); the maps are views of
:data:`pvagpu.ntnda.SCALAR_TYPES`. Values are p4p Values; dimensions are
:class:`pvagpu.pva.PvDimension` objects, as pvapy's are PvDimensions.
"""
from __future__ import annotations

import numpy as np

from .. import codecs, ntnda
from ..errors import FrameError
from ..hpc.ad_image_processor import AdImageProcessor
from ..pva.objects import PvDimension

_IMAGE_ROWS = [row for row in ntnda.SCALAR_TYPES if row.dtype is not None]


class AdImageUtility:
    """Class methods for area-detector images (pvapy's ``AdImageUtility``)."""

    COLOR_MODE_MONO = int(ntnda.ColorMode.MONO)   # [NX, NY]
    COLOR_MODE_RGB1 = int(ntnda.ColorMode.RGB1)   # [3, NX, NY]
    COLOR_MODE_RGB2 = int(ntnda.ColorMode.RGB2)   # [NX, 3, NY]
    COLOR_MODE_RGB3 = int(ntnda.ColorMode.RGB3)   # [NX, NY, 3]

    COLOR_MODE_MAP = {int(mode): mode.name for mode in
                      (ntnda.ColorMode.MONO, ntnda.ColorMode.RGB1,
                       ntnda.ColorMode.RGB2, ntnda.ColorMode.RGB3)}

    #: pvData scalar type -> numpy dtype (pvapy leaves BOOLEAN out; so do we)
    NUMPY_DATA_TYPE_MAP = {row.pv_type: row.dtype for row in _IMAGE_ROWS
                           if row.pv_type != ntnda.PvType.BOOLEAN}
    #: numpy dtype -> value union member
    NTNDA_DATA_FIELD_KEY_MAP = {row.dtype: row.union_key for row in _IMAGE_ROWS
                                if row.pv_type != ntnda.PvType.BOOLEAN}
    #: numpy dtype -> pvData scalar type
    PVA_DATA_TYPE_MAP = {dtype: pv_type for pv_type, dtype in NUMPY_DATA_TYPE_MAP.items()}

    reshapeNtNdArray = AdImageProcessor.reshapeNtNdArray
    getNtNdArrayDataFieldKey = AdImageProcessor.getNtNdArrayDataFieldKey
    generateNtNdArray2D = AdImageProcessor.generateNtNdArray2D
    replaceNtNdArrayImage2D = AdImageProcessor.replaceNtNdArrayImage2D

    @classmethod
    def getImageDimensions(cls, nx, ny, colorMode=COLOR_MODE_MONO) -> list:
        """The ``dimension`` list (PvDimension objects, fastest axis first)
        of an ``nx`` x ``ny`` image in ``colorMode``."""
        return [PvDimension(n, 0, n, 1, False) for n in reversed(_ad_shape(nx, ny, colorMode))]

    @classmethod
    def generateNtNdArray(cls, imageId, imageData, nx=None, ny=None,
                          colorMode=COLOR_MODE_MONO, dtype=None, compressorName=None,
                          extraFieldsPvObject=None):
        """New NTNDArray for a mono ``(ny, nx)`` or colour ``(ny, nx, 3)``
        image in ``colorMode``. With ``compressorName`` (an areaDetector
        codec), ``imageData`` holds the compressed bytes, and ``nx``, ``ny``
        and ``dtype`` describe the uncompressed image."""
        if int(colorMode) not in cls.COLOR_MODE_MAP:
            raise FrameError(f"unsupported colour mode {colorMode!r}; "
                             f"use one of {sorted(cls.COLOR_MODE_MAP)}")
        mode = ntnda.ColorMode(int(colorMode))
        descriptor = AdImageProcessor.DESCRIPTOR
        if not compressorName:
            value = ntnda.value_from_image(np.asarray(imageData), imageId, color_mode=mode,
                                           descriptor=descriptor)
        else:
            if nx is None or ny is None or dtype is None:
                raise FrameError("compressed image data needs nx, ny and dtype")
            data = codecs.as_bytes(np.ascontiguousarray(imageData))
            codecs.get(compressorName)   # an unknown codec is an error here
            value = ntnda.build_value(("ubyteValue", data), int(imageId),
                                      shape=_ad_shape(int(nx), int(ny), mode),
                                      dtype=ntnda.info_for_dtype(dtype).dtype,
                                      codec=compressorName, color_mode=mode,
                                      descriptor=descriptor)
        return ntnda.with_extra_fields(value, extraFieldsPvObject)


def _ad_shape(nx: int, ny: int, color_mode) -> tuple:
    """Numpy shape (slowest axis first) of an image in areaDetector order:
    ``(ny, nx)`` for mono; for colour, 3 at the colour axis of the mode."""
    mode = ntnda.ColorMode(int(color_mode))
    shape = [ny, nx]
    if mode != ntnda.ColorMode.MONO:
        # ntnda's table of where each RGB mode puts the colour axis
        shape.insert(ntnda._COLOR_AXIS[mode], 3)
    return tuple(shape)
