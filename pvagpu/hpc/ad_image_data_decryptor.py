"""AdImageDataDecryptor: decrypts area-detector frames (pvapy.hpc API)."""
from __future__ import annotations

from .. import crypto
from .data_decryptor import DataDecryptor


class AdImageDataDecryptor(DataDecryptor):
    """Decrypts ``pvagpu:EncryptedNTNDArray:1`` envelopes and republishes
    the original NTNDArray bit for bit (pixels, dims, attributes with their
    types, codec fields, uniqueId, timestamps). The clear dtype, dims and
    codec must agree with the decrypted frame. Same configuration as
    DataDecryptor."""

    STRUCTURE_IDS = (crypto.NTNDARRAY_ENVELOPE_ID,)
