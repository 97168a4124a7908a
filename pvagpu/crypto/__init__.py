"""The authenticated envelope of the encryptor/decryptor processors.

One module per concept:

* :mod:`~pvagpu.crypto.errors`: :class:`EnvelopeRejected` (with one of the
  :data:`REJECT_REASONS`) and :class:`KeyFileError`;
* :mod:`~pvagpu.crypto.keys`: key files (load, check, generate), key
  wrapping, signatures, fingerprints;
* :mod:`~pvagpu.crypto.envelope`: the format: :data:`ENVELOPE_FIELDS`, the
  structure IDs, :func:`associated_data`, :func:`signed_message`, the
  wrapped key record;
* :mod:`~pvagpu.crypto.sealer`: :class:`EnvelopeSealer` (objects into
  envelopes, key epochs and rotation);
* :mod:`~pvagpu.crypto.opener`: :class:`EnvelopeOpener` (envelopes back
  into objects, every check);
* :mod:`~pvagpu.crypto.replay`: :class:`ReplayGuard` (the replay rules and
  what a receiver remembers);
* :mod:`~pvagpu.crypto.unwrap`: :class:`KeyUnwrapper` (the RSA work of a
  receiver: memoised, and budgeted before authentication);
* :mod:`~pvagpu.crypto.policy`: what a running encryptor or decryptor
  accepts from configure() (no downgrade unless allowed at start, no file
  details in its messages).

The object inside an envelope is serialised by :mod:`pvagpu.pva.serialize`
(a general p4p Value serialiser, no pickle, no eval). The README section
"Encrypted streams" describes the wire format.
"""
from .envelope import (DATA_ENVELOPE_ID, DEFAULT_MAX_FRAME_BYTES, ENVELOPE_FIELDS,
                       ENVELOPE_VERSION, KEY_ID_BYTES, MAX_CLOCK_SKEW, NONCE_BYTES,
                       NTNDARRAY_ENVELOPE_ID, TAG_BYTES, associated_data, envelope_type,
                       ntndarray_summary, require_ntndarray, signed_message)
from .errors import REJECT_REASONS, EnvelopeRejected, KeyFileError
from .keys import (MIN_RSA_BITS, fingerprint, generate_key_pair, load_private_key,
                   load_public_key, require_rsa, sign, signature_algorithm, signature_size,
                   verify)
from .opener import EnvelopeOpener
from .replay import ReplayGuard
from .sealer import EnvelopeSealer
from .unwrap import KeyUnwrapper

__all__ = [
    # errors
    "REJECT_REASONS", "EnvelopeRejected", "KeyFileError",
    # keys
    "MIN_RSA_BITS", "fingerprint", "generate_key_pair", "load_private_key", "load_public_key",
    "require_rsa", "sign", "signature_algorithm", "signature_size", "verify",
    # the envelope format
    "DATA_ENVELOPE_ID", "DEFAULT_MAX_FRAME_BYTES", "ENVELOPE_FIELDS", "ENVELOPE_VERSION", "KEY_ID_BYTES", "MAX_CLOCK_SKEW",
    "NONCE_BYTES", "NTNDARRAY_ENVELOPE_ID", "TAG_BYTES", "associated_data", "envelope_type",
    "ntndarray_summary", "require_ntndarray", "signed_message",
    # sealing, opening, replay
    "EnvelopeSealer", "EnvelopeOpener", "ReplayGuard", "KeyUnwrapper",
]
