"""What a running encryption processor takes from ``configure()``.

``configure()`` arrives over the consumer's control channel, from any PVA
client that can reach it. So a running encryptor or decryptor refuses
every change that weakens it (each processor lists its own: signing or
verifying off, another key, another channel binding, a looser limit)
unless it was started with ``allowDowngrade: true``, a setting that only
the processor's start configuration can give. The messages a remote client
gets back name no file: whether a path exists, is readable or holds a PEM
key goes to the local log only.
"""
from __future__ import annotations

from ..errors import ConfigurationError
from .errors import KeyFileError

#: settings that only the start configuration may give
START_ONLY = ("allowDowngrade",)


def flag(config: dict, key: str, default: bool) -> bool:
    """A boolean setting: a bool, or one of the usual words."""
    val = config.get(key, default)
    if isinstance(val, str):
        low = val.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise ConfigurationError(f"{key} must be true or false, got {val!r}")
    return bool(val)


def number(config: dict, key: str, kind=float):
    """A numeric setting (None or missing: 0)."""
    try:
        value = kind(config.get(key) or 0)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigurationError(f"{key}: {exc}") from None
    if kind is float and value != value:
        raise ConfigurationError(f"{key}: not a number")
    return value


def loosened(old: float, new: float) -> bool:
    """Whether limit ``new`` is looser than ``old`` (0: no limit)."""
    return old > 0 and (new <= 0 or new > old)


def check_reconfiguration(processor, update: dict, weakenings: list, allowed: bool) -> None:
    """Refuse ``update`` (ConfigurationError) if it sets a start-only
    setting, or weakens ``processor`` (``weakenings``: what it would
    loosen, in words) and ``allowed`` (allowDowngrade) is off."""
    name = type(processor).__name__
    for key in START_ONLY:
        if key in update:
            raise ConfigurationError(f"{name}: {key} can only be given when the processor "
                                     f"starts")
    if weakenings and not allowed:
        processor.logger.warning("%s: configure refused, it would weaken the running "
                                 "processor: %s", name, ", ".join(weakenings))
        raise ConfigurationError(f"{name}: configure refused: it would weaken the running "
                                 f"processor ({', '.join(weakenings)}); allowed only when "
                                 f"started with allowDowngrade: true")


def remote_error(processor, exc: ConfigurationError) -> ConfigurationError:
    """What a remote client is told of ``exc``, raised by loading the new
    configuration: key file problems in one generic sentence (the details
    are logged here), other settings as they are."""
    if not isinstance(exc, KeyFileError):
        return exc
    name = type(processor).__name__
    processor.logger.warning("%s: configure refused: %s", name, exc)
    return ConfigurationError(f"{name}: configure refused: a key file given is not usable "
                              f"(details in the consumer's log)")
