"""Consumer ids and the channel names made from them.

pvapy's flags name channels with ``_`` (``pvapy:consumer:<id>:<kind>``) and
``*`` (the consumer id), the id formatted with -ifs; -cid lists the ids of
the consumers to run. These are read here by strict parsers, never
evaluated as Python.
"""
from __future__ import annotations

import re

from ..errors import ConfigurationError

#: most consumers that --consumer-id-list may name (one process each)
MAX_CONSUMERS = 1024

#: largest consumer id (consumerId is a uint32 on the status channel)
MAX_CONSUMER_ID = 2**32 - 1


def format_id(consumer_id: int, id_format_spec: str | None = None) -> str:
    """The consumer id as it goes into channel names: formatted with
    ``id_format_spec`` (pvapy's -ifs, a Python format spec such as ``03d``:
    ``f'{id:{spec}}'`` as pvapy's SystemController.formatIdString), plain
    without one. A spec that cannot format the id raises
    :class:`ConfigurationError`."""
    if not id_format_spec:
        return str(consumer_id)
    try:
        text = format(int(consumer_id), id_format_spec)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigurationError(
            f"id format spec {id_format_spec!r} cannot format consumer id {consumer_id}: {exc}; "
            f"give a format spec for integers, e.g. 03d") from None
    if not text.strip():
        raise ConfigurationError(f"id format spec {id_format_spec!r} formats consumer id "
                                 f"{consumer_id} as {text!r}")
    return text


def channel_name(spec: str | None, kind: str, consumer_id: int,
                 id_format_spec: str | None = None) -> str | None:
    """A channel name from a flag value, as pvapy forms it: ``_`` ->
    ``pvapy:consumer:<id>:<kind>``, ``*`` -> the consumer id; the id
    formatted with ``id_format_spec`` (:func:`format_id`)."""
    if not spec:
        return None
    cid = format_id(consumer_id, id_format_spec)
    if spec == "_":
        return f"pvapy:consumer:{cid}:{kind}"
    return spec.replace("*", cid)


_INT = r"\s*([+-]?[0-9]{1,18})\s*"
_RANGE = re.compile(rf"range\({_INT}(?:,{_INT}(?:,{_INT})?)?\)", re.ASCII)
_ID = re.compile(r"[0-9]{1,18}", re.ASCII)


def parse_id_list(spec) -> list:
    """``--consumer-id-list``: the consumer ids, in the order given.

    pvapy evaluates the text as Python (``[spec]``, or ``range(...)`` as
    is); this reads the same two forms and nothing else: a comma-separated
    list of ids, ``"1,3,7"`` (or ``"[1,3,7]"``), or ``"range(first,
    last+1[,step])"`` with integer arguments (``range(n)`` also works, as
    in Python). Ids must be >= 0 (the status channel's consumerId is
    uint32) and distinct (each consumer serves channels of its own).
    Anything else raises :class:`ConfigurationError`."""
    shown = repr(spec if isinstance(spec, (list, tuple, range)) else str(spec))
    if isinstance(spec, (list, tuple, range)):
        ids = [int(i) for i in spec]
    else:
        text = str(spec).strip()
        match = _RANGE.fullmatch(text)
        if match:
            args = [int(a) for a in match.groups() if a is not None]
            if len(args) == 3 and args[2] == 0:
                raise ConfigurationError(f"consumer id list {shown}: the range step is 0")
            ids = range(*args)
            if len(ids) > MAX_CONSUMERS:
                raise ConfigurationError(f"consumer id list {shown} names {len(ids)} consumers; "
                                         f"at most {MAX_CONSUMERS} are allowed")
            ids = list(ids)
        elif text.startswith("range"):
            raise ConfigurationError(
                f"consumer id list {shown}: expected range(first,last+1[,step]) with integer "
                f"arguments, e.g. range(1,5) for the ids 1, 2, 3, 4")
        else:
            body = text[1:-1] if text.startswith("[") and text.endswith("]") else text
            items = [item.strip() for item in body.split(",")]
            if not all(_ID.fullmatch(item) for item in items):
                raise ConfigurationError(
                    f"consumer id list {shown}: expected comma-separated ids (integers >= 0) "
                    f"such as 1,3,7, or range(first,last+1[,step]) such as range(1,5)")
            ids = [int(item) for item in items]
    if not ids:
        raise ConfigurationError(f"consumer id list {shown}: names no consumer")
    if len(ids) > MAX_CONSUMERS:
        raise ConfigurationError(f"consumer id list {shown} names {len(ids)} consumers; "
                                 f"at most {MAX_CONSUMERS} are allowed")
    out_of_range = [i for i in ids if not 0 <= i <= MAX_CONSUMER_ID]
    if out_of_range:
        raise ConfigurationError(f"consumer id list {shown}: ids must be 0..{MAX_CONSUMER_ID} "
                                 f"(uint32), got {out_of_range[0]}")
    seen = set()
    for i in ids:
        if i in seen:
            raise ConfigurationError(f"consumer id list {shown}: id {i} is given twice "
                                     f"(each consumer needs an id of its own)")
        seen.add(i)
    return ids
