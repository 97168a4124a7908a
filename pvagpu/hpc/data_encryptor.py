"""DataEncryptor: encrypts every object into an authenticated envelope (pvapy.hpc API)."""
from __future__ import annotations

import time

from p4p import Value

from .. import crypto, pva
from ..crypto import policy
from ..errors import ConfigurationError
from .user_data_processor import UserDataProcessor


class DataEncryptor(UserDataProcessor):
    """Encrypts each input object (any PVA structure) and publishes the
    envelope (structure ``pvagpu:EncryptedData:1``, see :mod:`pvagpu.crypto`
    and the README section "Encrypted streams") on the output channel.

    Configuration (pvapy's keys first):

    - ``privateKeyFilePath``: the sender's private key (PEM; Ed25519 or RSA),
      used to sign. pvapy style, without ``publicKeyFilePath``: an RSA key
      whose public half is also the recipient key (one shared key pair).
    - ``sign`` (bool): sign every envelope. Default: true when
      ``privateKeyFilePath`` is given; without a private key it must be
      given as false (unsigned envelopes only when asked for).
    - ``publicKeyFilePath``: the receiver's RSA public key (PEM); the AES keys
      are wrapped for it. The safer setup: two key pairs, each side keeping
      its own private key.
    - ``keyRotationInterval`` (seconds, default 3600) and
      ``keyRotationFrames`` (default 1000000): start a new key epoch after
      either; <= 0 turns that criterion off.
    - ``channelName``: the channel the envelopes are bound to (default: the
      output channel).
    - ``allowDowngrade`` (bool, default false; start configuration only):
      let configure() turn signing off, change a key or the channel.

    A missing, unreadable, malformed or unsuitable key file raises
    :class:`pvagpu.crypto.KeyFileError` from the constructor, with the
    details; configure() (see :mod:`pvagpu.crypto.policy`) raises a
    ConfigurationError that names no file.
    """

    STRUCTURE_ID = crypto.DATA_ENVELOPE_ID
    #: the keys configure() applies
    CONFIG_KEYS = ("privateKeyFilePath", "publicKeyFilePath", "sign", "keyRotationInterval",
                   "keyRotationFrames", "channelName")

    def __init__(self, configDict=None):
        UserDataProcessor.__init__(self, configDict)
        config = dict(configDict or {})
        self.allowDowngrade = policy.flag(config, "allowDowngrade", False)
        self.config = {"keyRotationInterval": 3600.0, "keyRotationFrames": 1_000_000}
        self.config, self.sealer = self._load({**self.config, **config})
        self.resetStats()

    # -- configuration -----------------------------------------------------------

    def _load(self, config: dict):
        """(the configuration with ``sign`` resolved, its sealer)."""
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
        if "sign" not in config and signing_key is None:
            raise ConfigurationError(
                f'{type(self).__name__} without privateKeyFilePath cannot sign: give the '
                f'sender\'s private key, or "sign": false to send unsigned envelopes (anyone '
                f'with the receiver\'s public key can make those)')
        sign = policy.flag(config, "sign", True)
        if sign and signing_key is None:
            raise ConfigurationError("sign needs privateKeyFilePath (the sender's private key)")
        sealer = crypto.EnvelopeSealer(
            recipient, signing_key if sign else None,
            rotation_frames=policy.number(config, "keyRotationFrames", int),
            rotation_seconds=policy.number(config, "keyRotationInterval"),
            structure_id=self.STRUCTURE_ID)
        return {**config, "sign": sign}, sealer

    def _weakenings(self, new: dict) -> list:
        """What configuration ``new`` loosens, compared with the running one."""
        old = self.config
        out = []
        if old["sign"] and not policy.flag(new, "sign", True):
            out.append("signing off")
        if old["sign"] and new.get("privateKeyFilePath") != old.get("privateKeyFilePath"):
            out.append("another sender key")
        recipient = ("publicKeyFilePath" if old.get("publicKeyFilePath")
                     or new.get("publicKeyFilePath") else "privateKeyFilePath")
        if new.get(recipient) != old.get(recipient):
            out.append("another recipient key")
        if new.get("channelName") != old.get("channelName"):
            out.append("another channel binding")
        return out

    def configure(self, configDict):
        """Applies privateKeyFilePath, publicKeyFilePath, sign and the rotation
        settings; new keys or settings start a new key epoch. Refuses what
        would weaken the running encryptor (signing off, another key or
        channel) unless it was started with allowDowngrade. A refused or bad
        configuration raises and leaves the running one unchanged."""
        configDict = dict(configDict or {})
        update = {k: v for k, v in configDict.items() if k in self.CONFIG_KEYS}
        new = {**self.config, **update}
        policy.check_reconfiguration(self, configDict, self._weakenings(new),
                                     self.allowDowngrade)
        if not update:
            return
        try:
            config, sealer = self._load(new)
        except ConfigurationError as exc:
            raise policy.remote_error(self, exc) from None
        sealer.n_rotations += self.sealer.n_rotations
        self.config, self.sealer = config, sealer

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
