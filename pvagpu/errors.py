"""The exceptions pvagpu raises for bad input and bad configuration.

Every error that a frame, a payload or a configuration can cause is a
subclass of :class:`PvagpuError`, so the runtime can count it and go on
with the next frame. They also derive from ``ValueError`` where the cause
is a bad value, so callers that already catch ``ValueError`` keep working.
"""


class PvagpuError(Exception):
    """Base class of every error pvagpu raises on purpose."""


class FrameError(PvagpuError, ValueError):
    """An NTNDArray that cannot be turned into an image: dimensions that
    disagree with the data, an unsupported union member or colour mode."""


class CodecError(PvagpuError, ValueError):
    """A compressed payload that cannot be decoded or encoded."""


class UnknownCodecError(CodecError):
    """codec.name names a codec that pvagpu does not know."""


class CorruptPayloadError(CodecError):
    """A payload that is truncated, corrupt, or whose sizes disagree with
    the NTNDArray's compressedSize / uncompressedSize / data type."""


class ConfigurationError(PvagpuError, ValueError):
    """A configuration value (processor args, command-line flag, output
    directory, key file, ...) that cannot be used. Also exported as
    ``pvagpu.pva.ConfigurationError``, pvapy's name."""


class OutputFileError(PvagpuError, OSError):
    """An output file that cannot be written: a missing or unwritable
    directory, a full disk, an image the file format cannot hold. The
    message names the file and the cause."""


class RingOverrunError(PvagpuError):
    """A GPU processor's pinned staging ring had no free slot: the frame was
    dropped (counted by the consumer as an error, and in nRingOverruns)."""


class BatchFramesError(PvagpuError):
    """Some frames of a batch could not be processed, the others were.

    ``failures``: ``(objectId, exception)`` of each frame not processed;
    ``n_processed``: how many frames of the batch were. The consumer counts
    each failure as an error of its own kind and the rest as processed, so
    one corrupt frame does not cost the frames around it."""

    def __init__(self, failures, n_processed: int):
        self.failures = list(failures)
        self.n_processed = int(n_processed)
        first = self.failures[0][1] if self.failures else None
        super().__init__(f"{len(self.failures)} frame(s) of a batch not processed (first: "
                         f"{type(first).__name__}: {first}); {self.n_processed} processed")
