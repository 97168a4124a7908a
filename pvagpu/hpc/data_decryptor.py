"""DataDecryptor: opens the encryptor's envelopes (pvapy.hpc API)."""
from __future__ import annotations

import time

from .. import crypto, pva
from ..errors import ConfigurationError
from .data_encryptor import _flag
from .user_data_processor import UserDataProcessor


class DataDecryptor(UserDataProcessor):
    """Decrypts envelopes made by :class:`DataEncryptor` (or
    AdImageDataEncryptor) and publishes the original object, bit for bit,
    on the output channel.

    Configuration (pvapy's keys first):

    - ``privateKeyFilePath``: the receiver's RSA private key (PEM).
    - ``verify`` (bool, default False): require a valid signature by the
      sender on every envelope.
    - ``publicKeyFilePath``: the sender's public key (Ed25519 or RSA, PEM)
      that signatures are checked with. pvapy style, with verify and without
      it: the public half of privateKeyFilePath (one shared key pair).
    - ``expectedChannel``: the channel envelopes must be bound to (default:
      this consumer's input channel; ``"*"`` accepts any channel).
    - ``maxKeyAge`` (seconds, default 0 = no limit): reject key epochs
      started longer ago than that.

    Every envelope that fails a check is rejected: counted in ``nRejected``
    and in ``nRejected<Reason>`` (reasons: :data:`pvagpu.crypto.REJECT_REASONS`),
    and :class:`pvagpu.crypto.EnvelopeRejected` is raised, which the consumer
    counts as a processing error and logs at a limited rate; the stream goes on.
    """

    STRUCTURE_IDS = (crypto.NTNDARRAY_ENVELOPE_ID, crypto.DATA_ENVELOPE_ID)

    def __init__(self, configDict=None):
        UserDataProcessor.__init__(self, configDict)
        self.config = {"verify": False, "maxKeyAge": 0.0}
        self.opener = None
        self.replay_guard = None
        self._apply(dict(configDict or {}))
        self.resetStats()

    def _apply(self, update: dict) -> None:
        config = {**self.config, **update}
        verify = _flag(config, "verify", False)
        private_path = config.get("privateKeyFilePath")
        if not private_path:
            raise ConfigurationError(f"{type(self).__name__} needs privateKeyFilePath "
                                     f"(the receiver's RSA private key)")
        private_key = crypto.require_rsa(
            crypto.load_private_key(private_path, "privateKeyFilePath"),
            "privateKeyFilePath", private_path)
        verify_key = None
        if verify:
            public_path = config.get("publicKeyFilePath")
            verify_key = (crypto.load_public_key(public_path, "publicKeyFilePath")
                          if public_path else private_key.public_key())
        elif config.get("publicKeyFilePath"):
            crypto.load_public_key(config["publicKeyFilePath"], "publicKeyFilePath")  # checked
        try:
            max_age = float(config.get("maxKeyAge") or 0)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"maxKeyAge: {exc}") from None
        # the replay state belongs to the receiver key: the same key keeps it
        # (what was accepted stays rejected as a replay), a new key starts afresh
        receiver = crypto.fingerprint(private_key)
        replay_guard = self.replay_guard
        if replay_guard is None or replay_guard.receiver != receiver:
            replay_guard = crypto.ReplayGuard(receiver)
        opener = crypto.EnvelopeOpener(private_key, verify_key, structure_ids=self.STRUCTURE_IDS,
                                       max_key_age=max_age, replay_guard=replay_guard)
        config["verify"] = verify
        self.opener = opener
        self.replay_guard = replay_guard
        self.config = config

    def configure(self, configDict):
        """Applies privateKeyFilePath, publicKeyFilePath, verify, expectedChannel
        and maxKeyAge. A bad key file raises and leaves the running
        configuration unchanged. The replay state
        (:class:`pvagpu.crypto.ReplayGuard`) stays while the receiver key
        does, so envelopes accepted before are still rejected as replays."""
        keys = ("privateKeyFilePath", "publicKeyFilePath", "verify", "expectedChannel",
                "maxKeyAge")
        update = {k: v for k, v in dict(configDict or {}).items() if k in keys}
        if update:
            self._apply(update)

    def _expected_channel(self):
        chan = self.config.get("expectedChannel")
        if chan == "*":
            return None
        return chan if chan is not None else (self.inputChannel or "")

    def decryptObject(self, pvObject, commit: bool = True):
        """The object inside the envelope ``pvObject``; raises
        :class:`pvagpu.crypto.EnvelopeRejected`."""
        self.opener.expected_channel = self._expected_channel()
        return self.opener.open(pvObject, commit=commit)

    def process(self, pvObject):
        t0 = time.perf_counter()
        try:
            value = self.decryptObject(pvObject)
        except crypto.EnvelopeRejected as exc:
            self.nRejected += 1
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            raise
        finally:
            self.processingTime += time.perf_counter() - t0
        self.nDecrypted += 1
        self.nBytesIn += pvObject["ciphertext"].nbytes
        self.updateOutputChannel(value)
        return value

    def getOutputPvObjectType(self, pvObject):
        """The decrypted first object when it opens (the replay state is not
        touched); otherwise None, and the output record is created from the
        first decrypted object."""
        try:
            return self.decryptObject(pvObject, commit=False)
        except crypto.EnvelopeRejected:
            return None

    def resetStats(self):
        self.nDecrypted = 0
        self.nRejected = 0
        self.nBytesIn = 0
        self.processingTime = 0.0
        self.rejected = {}

    def getStats(self):
        t = self.processingTime
        stats = {"nDecrypted": self.nDecrypted, "nRejected": self.nRejected,
                 "nBytesIn": self.nBytesIn, "processingTime": t,
                 "decryptedRate": self.nDecrypted / t if t > 0 else 0.0,
                 "verified": bool(self.config.get("verify"))}
        for reason in crypto.REJECT_REASONS:
            stats[f"nRejected{reason}"] = self.rejected.get(reason, 0)
        return stats

    def getStatsPvaTypes(self):
        types = {"nDecrypted": pva.UINT, "nRejected": pva.UINT, "nBytesIn": pva.ULONG,
                 "processingTime": pva.DOUBLE, "decryptedRate": pva.DOUBLE,
                 "verified": pva.BOOLEAN}
        for reason in crypto.REJECT_REASONS:
            types[f"nRejected{reason}"] = pva.UINT
        return types
