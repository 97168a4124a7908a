"""The receiver's monitor request: fields, server queue and distributor options.

Distributor: with ``distributor`` options (group, set, trigger, updates) the
monitor request asks a pvDatabase server's distributor plugin (pvapy's
``pydistributor``) to spread the updates between the clients of a group
(INTEROP 3.8). p4p's request-string parser rejects the ``_[...]`` syntax,
so that request is a hand-built pvRequest Value (see :func:`monitor_request`).

A server without the plugin (pvxs: pvagpu-sim-server, a pvagpu consumer's
output channel, p4p, NDPluginPvxs) answers such a request with an error
("Monitor Create implied error") and sends nothing; the receiver then says
so once (:func:`distributor_fallback_message`: the pvapy-mirror-server route)
and subscribes without the plugin: every frame, as the consumer's --help
says.

Field request: ``field_request`` (pvapy's -fr, e.g. ``"value,uniqueId"``)
asks the server for a subset of the fields; the object id field is always
added (:func:`parse_field_request`). A pvDatabase server (pvapy) then sends
a structure of just those fields, a pvxs server (p4p, NDPluginPvxs) the
whole structure with only those fields marked changed and filled in. As in
pvapy, the field request is ignored when distributor options are given.
"""
from __future__ import annotations

import re

from p4p import Type, Value

from ..errors import ConfigurationError


def distributor_options(options: dict) -> str:
    """The distributor plugin's option string, ``key:value;...``, of the
    options that are not None, e.g. ``{"group": "g", "updates": 1}`` ->
    ``"group:g;updates:1"``."""
    return ";".join(f"{key}:{value}" for key, value in (options or {}).items()
                    if value is not None)


#: one field of a field request: a name or a dotted path (codec.name)
_FIELD_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*", re.ASCII)


def parse_field_request(text: str | None, oid_field: str | None = "uniqueId") -> tuple:
    """The fields that ``--field-request`` asks for, the object id field
    included; () for all fields (an empty request).

    Accepted, as pvapy's DataConsumer.getPvMonitorRequest reads it (it
    strips ``field(`` and ``)`` and puts the rest into ``field(...)``): a
    comma-separated list of field names or dotted paths, optionally written
    as ``field(...)``: ``"value,uniqueId"``, ``"field(value,codec.name)"``.
    ``oid_field`` is put first unless it (or a structure holding it) is
    listed, as pvapy prepends ``<oid>,``. Anything else (options in
    brackets, unbalanced parentheses, empty names) raises
    :class:`~pvagpu.errors.ConfigurationError`: the request goes to the
    server, so it is checked here rather than sent as written."""
    if text is None:
        return ()
    body = text.strip()
    if body.startswith("field(") and body.endswith(")"):
        body = body[len("field("):-1].strip()
    if not body:
        return ()
    fields = [item.strip() for item in body.split(",")]
    bad = [item for item in fields if not _FIELD_PATH.fullmatch(item)]
    if bad:
        raise ConfigurationError(
            f"field request {text!r}: {bad[0]!r} is not a field name; give a comma-separated "
            f"list of field names or dotted paths, e.g. 'value,uniqueId' or "
            f"'field(value,codec.name)'")
    fields = list(dict.fromkeys(fields))  # each field once, in the order given
    if oid_field and not any(oid_field == f or oid_field.startswith(f + ".") for f in fields):
        fields.insert(0, oid_field)
    return tuple(fields)


def monitor_request(server_queue_size: int = 0, distributor: dict | None = None,
                    plugin: str = "pydistributor", fields=()):
    """The monitor's pvRequest.

    Without distributor options a request string,
    ``record[queueSize=N]field(<fields>)`` (the record option when
    ``server_queue_size`` > 0; ``fields`` from :func:`parse_field_request`,
    none for all fields). With them a pvRequest Value, the structure that
    pvAccess's parser makes of ``record[queueSize=N]field(_[plugin=options])``::

        field.<_>._options.<plugin> = "group:G;updates:U"
        record._options.queueSize = "N"

    and ``fields`` is ignored, as pvapy ignores its field request then.
    p4p's raw client passes a Value through unchanged."""
    options = distributor_options(distributor or {})
    if not options:
        return (f"record[queueSize={server_queue_size}]" if server_queue_size > 0 else "") \
            + f"field({','.join(fields)})"
    fields = [("field", ("S", None, [("_", ("S", None, [
        ("_options", ("S", None, [(plugin, "s")]))]))]))]
    init = {"field": {"_": {"_options": {plugin: options}}}}
    if server_queue_size > 0:
        fields.append(("record", ("S", None, [("_options", ("S", None, [("queueSize", "s")]))])))
        init["record"] = {"_options": {"queueSize": str(server_queue_size)}}
    return Value(Type(fields), init)


def request_text(request, distributor: dict | None, plugin: str) -> str:
    """The request as pvapy writes it on its command line: a request string
    as it is, a distributor request Value as ``field(_[plugin=options])``."""
    if isinstance(request, str):
        return request
    return f"field(_[{plugin}={distributor_options(distributor)}])"


def distributor_fallback_message(channel: str, plugin: str, error) -> str:
    """The warning when ``channel``'s server refused the distributor request."""
    return (f"{channel}: the server has no distributor plugin {plugin!r} (it answered "
            f"{error}); receiving EVERY frame without it (missed-frame offset 1). To share "
            f"frames between consumers, serve the stream through pvapy-mirror-server, which "
            f"has the distributor (pip install 'pvagpu[distributor]'; README, \"Scaling out\")")
