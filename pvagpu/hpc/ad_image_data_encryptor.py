"""AdImageDataEncryptor: encrypts area-detector frames (pvapy.hpc API)."""
from __future__ import annotations

from .. import crypto
from .data_encryptor import DataEncryptor


class AdImageDataEncryptor(DataEncryptor):
    """Encrypts NTNDArray frames into ``pvagpu:EncryptedNTNDArray:1``
    envelopes. Like :class:`DataEncryptor`, plus the frame's dtype, dims and
    codec in clear envelope fields bound by the associated data (the
    decryptor checks them against the decrypted frame). The frame travels
    as it is, compressed or not. Same configuration as DataEncryptor."""

    STRUCTURE_ID = crypto.NTNDARRAY_ENVELOPE_ID
