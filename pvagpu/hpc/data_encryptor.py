"""DataEncryptor: encrypts every object into an authenticated envelope (pvapy.hpc API)."""
from __future__ import annotations

import time

from p4p import Value

from .. import crypto, pva
from ..errors import ConfigurationError
from .user_data_processor import UserDataProcessor


def _flag(config: dict, key: str, default: bool) -> bool:
    val = config.get(key, default)
    if isinstance(val, str):
        low = val.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigurationError(f"{key} must be true or false, got {val!r}")
    return bool(val)


class DataEncryptor(UserDataProcessor):
    """Encrypts each input object (any PVA structure) and publishes the
    envelope (structure ``pvagpu:EncryptedData:1``, see :mod:`pvagpu.crypto`
    and the README section "Encrypted streams") on the output channel.

    Configuration (pvapy's keys first):

    - ``privateKeyFilePath``: the sender's private key (PEM; Ed25519 or RSA),
      used to sign. pvapy style, without ``publicKeyFilePath``: an RSA key
      whose public half is also the recipient key (one shared key pair).
    - ``sign`` (bool, default False): sign every envelope.
    - ``publicKeyFilePath``: the receiver's RSA public key (PEM); the AES keys
      are wrapped for it. The safer setup: two key pairs, each side keeping
      its own private key.
    - ``keyRotationInterval`` (seconds, default 3600) and
      ``keyRotationFrames`` (default 1000000): start a new key epoch after
      either; <= 0 turns that criterion off.
    - ``channelName``: the channel the envelopes are bound to (default: the
      output channel).

    A missing, unreadable, malformed or unsuitable key file raises
    :class:`pvagpu.crypto.KeyFileError` from the constructor or configure().
    """

    STRUCTURE_ID = crypto.DATA_ENVELOPE_ID

    def __init__(self, configDict=None):
        UserDataProcessor.__init__(self, configDict)
        self.config = {"sign": False, "keyRotationInterval": 3600.0,
                       "keyRotationFrames": 1_000_000}
        self.sealer = None
        self._apply(dict(configDict or {}))
        self.resetStats()

    # -- configuration -----------------------------------------------------------

    def _apply(self, update: dict) -> None:
        config = {**self.config, **update}
        sign = _flag(config, "sign", False)
        private_path = config.get("privateKeyFilePath")
        public_path = config.get("publicKeyFilePath")
        signing_key = crypto.load_private_key(private_path, "privateKeyFilePath") \
            if private_path else None
        if public_path:
            recipient = crypto.require_rsa(
                crypto.load_public_key(public_path, "publicKeyFilePath"),
                "publicKeyFilePath", public_path)
        elif signing_key is not None:
            recipient = crypto.require_rsa(signing_key.public_key(),
                                           "privateKeyFilePath (without publicKeyFilePath, "
                                           "the receiver's key is its public half)", private_path)
        else:
            raise ConfigurationError(
                f"{type(self).__name__} needs publicKeyFilePath (the receiver's RSA public key), "
                f"or pvapy's privateKeyFilePath (one RSA key pair shared by both ends)")
        if sign and signing_key is None:
            raise ConfigurationError("sign needs privateKeyFilePath (the sender's private key)")
        try:
            interval = float(config.get("keyRotationInterval") or 0)
            frames = int(config.get("keyRotationFrames") or 0)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"key rotation settings: {exc}") from None
        self.sealer = crypto.EnvelopeSealer(
            recipient, signing_key if sign else None, rotation_frames=frames,
            rotation_seconds=interval, structure_id=self.STRUCTURE_ID)
        config["sign"] = sign
        self.config = config

    def configure(self, configDict):
        """Applies privateKeyFilePath, publicKeyFilePath, sign and the rotation
        settings; new keys or settings start a new key epoch. A bad key file
        raises and leaves the running configuration unchanged."""
        keys = ("privateKeyFilePath", "publicKeyFilePath", "sign", "keyRotationInterval",
                "keyRotationFrames", "channelName")
        update = {k: v for k, v in dict(configDict or {}).items() if k in keys}
        if update:
            rotations = self.sealer.n_rotations
            self._apply(update)
            self.sealer.n_rotations += rotations

    @property
    def channel(self) -> str:
        return self.config.get("channelName") or self.outputChannel or ""

    # -- processing --------------------------------------------------------------

    def encryptObject(self, pvObject):
        """The envelope (a p4p Value) of ``pvObject``."""
        return self.sealer.seal(pvObject, self.channel)

    def process(self, pvObject):
        t0 = time.perf_counter()
        envelope = self.encryptObject(pvObject)
        self.processingTime += time.perf_counter() - t0
        self.nEncrypted += 1
        n = envelope["ciphertext"].nbytes
        self.nBytesIn += n - crypto.TAG_BYTES
        self.nBytesOut += n
        self.updateOutputChannel(envelope)
        return envelope

    def getOutputPvObjectType(self, pvObject):
        # the record must be opened with the very Type the envelopes are built with
        return Value(self.sealer.type, {})

    # -- statistics --------------------------------------------------------------

    def resetStats(self):
        self.nEncrypted = 0
        self.nBytesIn = 0
        self.nBytesOut = 0
        self.processingTime = 0.0
        self._rotations0 = self.sealer.n_rotations

    def getStats(self):
        t = self.processingTime
        return {"nEncrypted": self.nEncrypted, "nBytesIn": self.nBytesIn,
                "nBytesOut": self.nBytesOut,
                "nKeyRotations": self.sealer.n_rotations - self._rotations0,
                "processingTime": t, "encryptedRate": self.nEncrypted / t if t > 0 else 0.0,
                "signed": bool(self.config.get("sign"))}

    def getStatsPvaTypes(self):
        return {"nEncrypted": pva.UINT, "nBytesIn": pva.ULONG, "nBytesOut": pva.ULONG,
                "nKeyRotations": pva.UINT, "processingTime": pva.DOUBLE,
                "encryptedRate": pva.DOUBLE, "signed": pva.BOOLEAN}
