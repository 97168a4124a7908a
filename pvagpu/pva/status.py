"""The status channel: the consumer's statistics as a PVA record.

The structure is pvapy's (INTEROP 3.6; structure ID ``structure``):
consumerId, inputChannel, objectId (counts status publications),
objectTime, objectTimestamp (time_t), then receiverStats, publisherStats,
queueStats and processorStats with pvapy's fields and types, then userStats
(the keys and types of the processor's ``getStatsPvaTypes()``; only those
keys are published) and one ``metadataStats_<n>`` per metadata channel.
pvagpu's extra fields (see :data:`pvagpu.stats.STATS_TYPES`) follow pvapy's
inside each group, so a client written for pvapy's record reads the same
fields by the same names.

This module is the one place that lays out the record: the field types come
from :mod:`pvagpu.stats` (:data:`~pvagpu.stats.STATS_TYPES`,
:data:`~pvagpu.stats.METADATA_STATS_TYPES`), the values from the statistics
dictionary of :func:`pvagpu.stats.build_stats`, converted to their fields'
types by :func:`fill` (integers clamped to the range that
:data:`pvagpu.ntnda.SCALAR_TYPES` gives their type).

Unlike pvapy 5.6, ``metadataStats_<n>`` carries the channel's real counts.

``sections``: further sub-structures after those, each filled from the
statistics key of its name (a consumer with worker processes has one
``worker<N>Stats`` per worker, see :mod:`pvagpu.runtime.workers.stats`).
"""
from __future__ import annotations

import logging
import time

from p4p import Type, Value
from p4p.server.thread import SharedPV

from ..ntnda import TIME_T, TimeStamp, info_for_p4p_code, p4p_code
from ..stats import GROUPS, METADATA_STATS_TYPES, PVAPY_KEY_COUNT, STATS_TYPES

log = logging.getLogger(__name__)


HEADER_FIELDS = [
    ("consumerId", "I"),
    ("inputChannel", "s"),
    ("objectId", "I"),
    ("objectTime", "d"),
    ("objectTimestamp", TIME_T),
]


def metadata_stats_spec() -> tuple:
    """p4p type spec of one ``metadataStats_<n>`` sub-structure (INTEROP 3.6):
    producerId u32, channel string, then receiverStats and queueStats."""
    return ("S", None, [("producerId", "I"), ("channel", "s")] + [
        (group, ("S", None, list(fields))) for group, fields in METADATA_STATS_TYPES.items()])


def user_stats_fields(pva_types: dict | None) -> list:
    """(name, p4p code) for a processor's ``getStatsPvaTypes()`` result;
    pvapy constants (``pva.UINT``) and p4p codes (``'I'``) are both accepted,
    keys whose type is not a scalar type are left out with a warning."""
    fields = []
    for key, pva_type in (pva_types or {}).items():
        try:
            fields.append((str(key), p4p_code(pva_type)))
        except (ValueError, TypeError) as exc:
            log.warning("userStats key %r left out of the status channel: %s", key, exc)
    return fields


def status_fields(user_fields=(), metadata_ids=(), extras: bool = True, sections=(),
                  id_field: str = "consumerId") -> list:
    """The status record's fields (p4p type spec). ``extras=False`` gives
    exactly pvapy's structure; ``sections``: ``(name, fields)`` of further
    sub-structures; ``id_field``: the name of the first field (a
    collector's is ``collectorId``)."""
    fields = [(id_field, HEADER_FIELDS[0][1])] + HEADER_FIELDS[1:]
    for group in GROUPS:
        group_fields = STATS_TYPES[group]
        if not extras:
            group_fields = group_fields[:PVAPY_KEY_COUNT[group]]
        fields.append((group, ("S", None, list(group_fields))))
    if user_fields:
        fields.append(("userStats", ("S", None, list(user_fields))))
    for n in metadata_ids:
        fields.append((f"metadataStats_{n}", metadata_stats_spec()))
    if extras:
        fields += [(name, ("S", None, list(section))) for name, section in sections]
    return fields


def status_type(user_fields=(), metadata_ids=(), extras: bool = True) -> Type:
    return Type(status_fields(user_fields, metadata_ids, extras))


def _convert(code: str, value):
    """``value`` as a scalar field of p4p type ``code`` takes it: integers
    clamped to the type's range (a count past 2**32 - 1 reads as the
    largest u32, not as an error), floats, bools and strings converted."""
    int_range = info_for_p4p_code(code).int_range
    if int_range is not None:
        lo, hi = int_range
        return min(max(lo, int(value)), hi)
    if code in ("f", "d"):
        return float(value)
    if code == "?":
        return bool(value)
    if code == "s":
        return str(value)
    return value


def fill(fields, data: dict) -> dict:
    """The part of ``data`` that ``fields`` (a p4p field list) describes,
    each value converted to its field's type; missing or unconvertible
    values are left out."""
    out = {}
    for name, spec in fields:
        if name not in data:
            continue
        item = data[name]
        if isinstance(spec, tuple) and spec[0] == "S":
            if isinstance(item, dict):
                out[name] = fill(spec[2], item)
            continue
        try:
            out[name] = _convert(spec, item)
        except (TypeError, ValueError, OverflowError):   # FrameError is a ValueError
            continue
    return out


class StatusChannel:
    """The status record of one consumer; :meth:`publish` posts statistics."""

    def __init__(self, server, name: str, consumer_id: int, input_channel: str,
                 user_types: dict | None = None, metadata_ids=(), sections=(),
                 id_field: str = "consumerId"):
        self.name = name
        #: the first field: ``consumerId``, or a collector's ``collectorId`` (pvapy's names)
        self.id_field = id_field
        self.user_fields = user_stats_fields(user_types)
        self.metadata_ids = list(metadata_ids)
        #: ``(name, fields)`` of the further sub-structures; a callable is
        #: given :attr:`user_fields` (a worker's section holds its userStats)
        sections = sections(self.user_fields) if callable(sections) else sections
        self.section_names = [name for name, _ in sections]
        self.fields = status_fields(self.user_fields, self.metadata_ids, sections=sections,
                                    id_field=id_field)
        self.type = Type(self.fields)
        self.object_id = 0
        self.pv = server.add(name, SharedPV(initial=Value(self.type, {
            id_field: consumer_id, "inputChannel": input_channel})))

    def value_for(self, stats: dict, now: float | None = None) -> Value:
        """The record's Value for a statistics dictionary
        (:func:`pvagpu.stats.build_stats`)."""
        now = time.time() if now is None else now
        data = {key: stats.get(key, {}) for key in GROUPS + ("userStats",)}
        data[self.id_field] = stats.get(self.id_field, 0)
        data["inputChannel"] = stats.get("inputChannel", "")
        data["objectId"] = self.object_id
        data["objectTime"] = now
        data["objectTimestamp"] = TimeStamp.from_seconds(now)._asdict()
        metadata = stats.get("metadataStats", {}) or {}
        for n in self.metadata_ids:
            entry = dict(metadata.get(f"metadata-{n}", {}))
            entry.setdefault("producerId", n)
            data[f"metadataStats_{n}"] = entry
        for section in self.section_names:
            data[section] = stats.get(section, {})
        return Value(self.type, fill(self.fields, data))

    def publish(self, stats: dict) -> Value:
        self.object_id += 1
        value = self.value_for(stats)
        self.pv.post(value)
        return value
