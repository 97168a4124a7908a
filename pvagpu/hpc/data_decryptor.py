"""DataDecryptor: opens the encryptor's envelopes (pvapy.hpc API)."""
from __future__ import annotations

import time

from collections import OrderedDict

from .. import crypto, pva
from ..crypto import policy
from ..errors import ConfigurationError
from ..stats import IdTracker
from .user_data_processor import UserDataProcessor


class DataDecryptor(UserDataProcessor):
    """Decrypts envelopes made by :class:`DataEncryptor` (or
    AdImageDataEncryptor) and publishes the original object, bit for bit,
    on the output channel.

    Configuration (pvapy's keys first):

    - ``privateKeyFilePath``: the receiver's RSA private key (PEM).
    - ``verify`` (bool, default true): require a valid signature by the
      sender on every envelope; false accepts unsigned envelopes (see the
      README: then anyone with the receiver's public key can send frames).
    - ``publicKeyFilePath``: the sender's public key (Ed25519 or RSA, PEM)
      that signatures are checked with. pvapy style, without it: the public
      half of privateKeyFilePath (one shared key pair).
    - ``expectedChannel``: the channel envelopes must be bound to (default:
      this consumer's input channel; ``"*"`` accepts any channel).
    - ``maxKeyAge`` (seconds, default 0 = no limit): reject key epochs
      started longer ago than that.
    - ``maxFrameBytes`` (default 1 GiB): the largest decrypted frame.
    - ``allowDowngrade`` (bool, default false; start configuration only):
      let configure() turn verify off, change a key while verifying, change
      the channel binding or loosen a limit.

    Every envelope that fails a check is rejected: counted in ``nRejected``
    and in ``nRejected<Reason>`` (reasons: :data:`pvagpu.crypto.REJECT_REASONS`),
    and :class:`pvagpu.crypto.EnvelopeRejected` is raised, which the consumer
    counts as a processing error and logs at a limited rate; the stream goes
    on. ``nMissed`` counts missed frames from the uniqueIds of accepted
    envelopes only (a rejected one cannot make frames look missed);
    ``lastAuthenticatedId`` is the last of them.
    """

    STRUCTURE_IDS = (crypto.NTNDARRAY_ENVELOPE_ID, crypto.DATA_ENVELOPE_ID)
    #: the keys configure() applies
    CONFIG_KEYS = ("privateKeyFilePath", "publicKeyFilePath", "verify", "expectedChannel",
                   "maxKeyAge", "maxFrameBytes")
    #: receiver keys whose replay state is kept (switching keys and back)
    RECEIVERS_KEPT = 4
    #: the clear uniqueId of an input is not to be trusted before process()
    #: accepted it; after a successful process(), ``lastAuthenticatedId`` is
    #: it (for a runtime that counts missed frames after processing)
    AUTHENTICATED_OBJECT_IDS = True

    def __init__(self, configDict=None):
        UserDataProcessor.__init__(self, configDict)
        config = dict(configDict or {})
        self.allowDowngrade = policy.flag(config, "allowDowngrade", False)
        self.ids = IdTracker(config.get("objectIdOffset") or 1,
                             config.get("nSequentialUpdates") or 1)
        self.lastAuthenticatedId = None
        self._receivers = OrderedDict()    # receiver fingerprint -> (ReplayGuard, KeyUnwrapper)
        self.config = {"maxKeyAge": 0.0, "maxFrameBytes": crypto.DEFAULT_MAX_FRAME_BYTES}
        self.config, self.opener = self._load({**self.config, **config})
        self.resetStats()

    # -- configuration -----------------------------------------------------------

    def _load(self, config: dict):
        """(the configuration with ``verify`` resolved, its opener)."""
        verify = policy.flag(config, "verify", True)
        private_path = config.get("privateKeyFilePath")
        if not private_path:
            raise ConfigurationError(f"{type(self).__name__} needs privateKeyFilePath "
                                     f"(the receiver's RSA private key)")
        private_key = crypto.require_rsa(
            crypto.load_private_key(private_path, "privateKeyFilePath"),
            "privateKeyFilePath", private_path)
        public_path = config.get("publicKeyFilePath")
        sender_key = (crypto.load_public_key(public_path, "publicKeyFilePath")
                      if public_path else private_key.public_key())
        max_frame = policy.number(config, "maxFrameBytes", int)
        if max_frame <= 0:
            raise ConfigurationError("maxFrameBytes must be above 0")
        opener = crypto.EnvelopeOpener(
            private_key, sender_key if verify else None, structure_ids=self.STRUCTURE_IDS,
            max_key_age=policy.number(config, "maxKeyAge"), max_frame_bytes=max_frame,
            **self._receiver_state(private_key))
        return {**config, "verify": verify}, opener

    def _receiver_state(self, private_key) -> dict:
        """The replay guard and unwrapper of a receiver key: the same ones
        whenever that key comes back (the last RECEIVERS_KEPT keys)."""
        fp = crypto.fingerprint(private_key)
        state = self._receivers.get(fp)
        if state is None:
            state = (crypto.ReplayGuard(fp), crypto.KeyUnwrapper(private_key))
        return {"replay_guard": state[0], "unwrapper": state[1]}

    def _keep_receiver_state(self) -> None:
        """Remember the running receiver key's state (before a configure)."""
        fp = self.opener.my_fp
        self._receivers[fp] = (self.opener.replay_guard, self.opener.unwrapper)
        self._receivers.move_to_end(fp)
        while len(self._receivers) > self.RECEIVERS_KEPT:
            self._receivers.popitem(last=False)

    @property
    def replay_guard(self):
        return self.opener.replay_guard

    def _weakenings(self, new: dict) -> list:
        """What configuration ``new`` loosens, compared with the running one."""
        old = self.config
        out = []
        if old["verify"]:
            if not policy.flag(new, "verify", True):
                out.append("verify off")
            if new.get("publicKeyFilePath") != old.get("publicKeyFilePath"):
                out.append("another sender key")
            if new.get("privateKeyFilePath") != old.get("privateKeyFilePath"):
                out.append("another receiver key")
        if self._expected_channel(new) != self._expected_channel(old):
            out.append("channel binding off" if new.get("expectedChannel") == "*"
                       else "another channel binding")
        if policy.loosened(policy.number(old, "maxKeyAge"), policy.number(new, "maxKeyAge")):
            out.append("maxKeyAge loosened")
        if policy.loosened(policy.number(old, "maxFrameBytes", int),
                           policy.number(new, "maxFrameBytes", int)):
            out.append("maxFrameBytes raised")
        return out

    def configure(self, configDict):
        """Applies privateKeyFilePath, publicKeyFilePath, verify,
        expectedChannel, maxKeyAge and maxFrameBytes (and the framework's
        objectIdOffset/nSequentialUpdates to the missed-frame count).
        Refuses what would weaken the running decryptor unless it was
        started with allowDowngrade. A refused or bad configuration raises
        and leaves the running one unchanged. The replay state of each
        receiver key stays, so envelopes accepted before are still rejected
        as replays, also after switching to another key and back."""
        configDict = dict(configDict or {})
        update = {k: v for k, v in configDict.items() if k in self.CONFIG_KEYS}
        new = {**self.config, **update}
        policy.check_reconfiguration(self, configDict, self._weakenings(new),
                                     self.allowDowngrade)
        if "objectIdOffset" in configDict:
            self.ids.offset = max(1, int(configDict["objectIdOffset"] or 1))
        if "nSequentialUpdates" in configDict:
            self.ids.sequential = max(1, int(configDict["nSequentialUpdates"] or 1))
        if not update:
            return
        self._keep_receiver_state()
        try:
            config, opener = self._load(new)
        except ConfigurationError as exc:
            raise policy.remote_error(self, exc) from None
        self.config, self.opener = config, opener

    def _expected_channel(self, config=None):
        chan = (self.config if config is None else config).get("expectedChannel")
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
        oid = int(pvObject["uniqueId"])        # authenticated: bound by the tag
        self.nMissed += self.ids.update(oid)
        self.lastAuthenticatedId = oid
        self.updateOutputChannel(value)
        return value

    def getOutputPvObjectType(self, pvObject):
        """The decrypted first object when it passes every check (it is not
        remembered as accepted: process() then takes it); otherwise None,
        and the output record is created from the first decrypted object."""
        try:
            return self.decryptObject(pvObject, commit=False)
        except crypto.EnvelopeRejected:
            return None

    def resetStats(self):
        self.nDecrypted = 0
        self.nRejected = 0
        self.nBytesIn = 0
        self.nMissed = 0
        self.processingTime = 0.0
        self.rejected = {}
        self.ids.restart()

    def getStats(self):
        t = self.processingTime
        stats = {"nDecrypted": self.nDecrypted, "nRejected": self.nRejected,
                 "nBytesIn": self.nBytesIn, "nMissed": self.nMissed, "processingTime": t,
                 "decryptedRate": self.nDecrypted / t if t > 0 else 0.0,
                 "verified": bool(self.config.get("verify"))}
        for reason in crypto.REJECT_REASONS:
            stats[f"nRejected{reason}"] = self.rejected.get(reason, 0)
        return stats

    def getStatsPvaTypes(self):
        types = {"nDecrypted": pva.UINT, "nRejected": pva.UINT, "nBytesIn": pva.ULONG,
                 "nMissed": pva.UINT,
                 "processingTime": pva.DOUBLE, "decryptedRate": pva.DOUBLE,
                 "verified": pva.BOOLEAN}
        for reason in crypto.REJECT_REASONS:
            types[f"nRejected{reason}"] = pva.UINT
        return types
