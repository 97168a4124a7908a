"""LaunchSettings: what pvagpu-launch runs with, from its flags and a TOML file.

Every setting has one name, used as the long flag (``--distributor-group``)
and as the TOML key (``distributor-group`` or ``distributor_group``). The
value is the flag's if given, else the file's ``[hosts.<this host>]``
table's, else the file's top level, else the default below::

    input-channel = "bl:mirror:image"
    gpus = "0,1,2,3"
    processor-class = "pvagpu.processors:FrameCounter"
    processor-args = {publish = false}       # a table, or JSON text

    [hosts.gpu01]                            # one table per node, in node order
    mirror = "13SIM1:Pva1:Image"             # what only this node does
    [hosts.gpu02]

With ``[hosts.*]`` tables the node index is this host's position among
them (``--host NAME`` picks one explicitly) and the number of nodes is
their count: the same command on every node spreads the stream, and
consumer ids and channel names stay unique across the nodes.

The file is read with :mod:`tomllib` (Python >= 3.11), else with ``tomli``
if it is installed; without either a :class:`~pvagpu.errors.ConfigurationError`
says so. Unknown keys, wrong types and unknown hosts are ConfigurationErrors
naming the key.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import socket
from dataclasses import dataclass, field
from typing import Optional

from ..errors import ConfigurationError


@dataclass
class LaunchSettings:
    """Everything one pvagpu-launch run needs; the defaults are the flags'."""
    #: pvagpu-sim-server arguments (a string or a list); None: no simulator
    sim: Optional[list] = None
    #: source channel the mirror server mirrors; "" = the simulator's channel; None: no mirror
    mirror: Optional[str] = None
    #: pvapy-mirror-server's queue size on the source channel
    mirror_queue_size: int = 100
    #: the channel the consumers read (the mirror's, the simulator's, or a detector's)
    input_channel: Optional[str] = None
    #: "auto" (visible GPUs), "none" (CPU consumers) or a comma list of device numbers
    gpus: str = "auto"
    #: consumers on this node; 0: one per GPU (one without GPUs)
    consumers: int = 0
    #: > 0: ONE consumer with this many worker processes (pvagpu-consumer --n-workers)
    n_workers: int = 0
    processor_file: Optional[str] = None
    processor_class: Optional[str] = None
    #: the processor's arguments: a dict (TOML table) or JSON text
    processor_args: Optional[dict] = None
    #: more pvagpu-consumer flags for every consumer (a string or a list)
    consumer_args: list = field(default_factory=list)
    distributor_group: str = "pvagpu"
    distributor_updates: int = 1
    distributor_trigger: str = "uniqueId"
    distributor_plugin_name: str = "pydistributor"
    #: every consumer gets every frame (no -dg/-du/-dt)
    no_distributor: bool = False
    #: prefix of the consumers' channel names: PREFIX:<id>:status, PREFIX:<id>:control
    name: str = "pvagpu"
    #: nodes running the same command, and this one's number (1-based)
    n_nodes: int = 1
    node: int = 1
    #: this node's name among the file's [hosts.*] tables
    host: Optional[str] = None
    #: seconds until everything stops; <= 0: until Ctrl-C
    runtime: float = 0.0
    #: seconds between table refreshes
    report_period: float = 1.0
    disable_curses: bool = False
    #: directory for the children's output; None: a new temporary directory
    log_dir: Optional[str] = None
    #: seconds a child has after SIGINT (then SIGTERM, then SIGKILL)
    stop_timeout: float = 10.0
    #: --monitor: status channels to watch (empty: those the settings imply); None: launch
    monitor: Optional[list] = None
    dry_run: bool = False

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, _CONVERT[f.name](f.name, getattr(self, f.name)))
        if self.n_nodes < 1 or not 1 <= self.node <= self.n_nodes:
            raise ConfigurationError(f"node {self.node} of {self.n_nodes}: the node number must "
                                     f"be between 1 and the number of nodes")
        for key in ("consumers", "n_workers", "mirror_queue_size"):
            if getattr(self, key) < 0:
                raise ConfigurationError(f"{_flag(key)} must not be negative")
        if self.distributor_updates < 1:
            raise ConfigurationError("--distributor-updates must be at least 1")
        if self.n_workers and self.consumers > 1:
            raise ConfigurationError("--n-workers runs ONE consumer with workers; leave out "
                                     "--consumers, or drop --n-workers for several consumers")
        if self.report_period <= 0:
            raise ConfigurationError("--report-period must be > 0")

    @property
    def sim_channel(self) -> Optional[str]:
        """The simulator's channel (its -cn/--channel-name; pvapy:image by default)."""
        if self.sim is None:
            return None
        args = self.sim
        for i, arg in enumerate(args):
            for flag in ("-cn", "--channel-name"):
                if arg == flag and i + 1 < len(args):
                    return args[i + 1]
                if arg.startswith(flag + "="):
                    return arg.split("=", 1)[1]
        return "pvapy:image"

    @property
    def mirror_source(self) -> Optional[str]:
        """The channel the mirror server mirrors (None: no mirror)."""
        if self.mirror is None:
            return None
        if self.mirror == "":
            if self.sim is None:
                raise ConfigurationError("--mirror without a channel mirrors the simulator's "
                                         "channel: give --sim too, or --mirror CHANNEL")
            return self.sim_channel
        return self.mirror

    @property
    def consumer_input(self) -> str:
        """The channel the consumers read: -ic, else the mirror's default name
        (SOURCE:mirror), else the simulator's channel."""
        if self.input_channel:
            return self.input_channel
        if self.mirror is not None:
            return f"{self.mirror_source}:mirror"
        if self.sim is not None:
            return self.sim_channel
        raise ConfigurationError("no input channel: give --input-channel (-ic), --mirror "
                                 "SOURCE or --sim ARGS")


NAMES = tuple(f.name for f in dataclasses.fields(LaunchSettings))


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


# --------------------------------------------------------------------------
# value checks, one per setting type (a flag's text or a TOML value)
# --------------------------------------------------------------------------

def _int(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigurationError(f"{key}: expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{key}: expected an integer, got {value!r}") from None


def _float(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigurationError(f"{key}: expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ConfigurationError(f"{key}: expected a number, got {value!r}") from None


def _bool(key, value):
    if not isinstance(value, bool):
        raise ConfigurationError(f"{key}: expected true or false, got {value!r}")
    return value


def _text(key, value):
    if not isinstance(value, str):
        raise ConfigurationError(f"{key}: expected a string, got {value!r}")
    return value


def _optional(check):
    return lambda key, value: None if value is None else check(key, value)


def _args(key, value):
    """A command line's arguments: a string (split as a shell would) or a list of strings."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise ConfigurationError(f"{key}: {exc} in {value!r}") from None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigurationError(f"{key}: expected a string of arguments or a list of strings, "
                             f"got {value!r}")


def _channels(key, value):
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigurationError(f"{key}: expected a list of channel names, got {value!r}")


def _json_object(key, value):
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"{key}: not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"{key}: expected a JSON object or TOML table, got {value!r}")
    return value


def _gpus(key, value):
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    text = _text(key, value if not isinstance(value, int) or isinstance(value, bool)
                 else str(value)).strip()
    if text in ("auto", "none"):
        return text
    items = [item.strip() for item in text.split(",")]
    if not all(item.isdigit() for item in items) or len(set(items)) != len(items):
        raise ConfigurationError(f"{key}: expected auto, none or a comma list of distinct "
                                 f"device numbers like 0,1,2,3, got {value!r}")
    return ",".join(items)


_CONVERT = {
    "sim": _optional(_args), "mirror": _optional(_text), "mirror_queue_size": _int,
    "input_channel": _optional(_text), "gpus": _gpus, "consumers": _int, "n_workers": _int,
    "processor_file": _optional(_text), "processor_class": _optional(_text),
    "processor_args": _optional(_json_object), "consumer_args": _args,
    "distributor_group": _text, "distributor_updates": _int, "distributor_trigger": _text,
    "distributor_plugin_name": _text, "no_distributor": _bool, "name": _text,
    "n_nodes": _int, "node": _int, "host": _optional(_text), "runtime": _float,
    "report_period": _float, "disable_curses": _bool, "log_dir": _optional(_text),
    "stop_timeout": _float, "monitor": _optional(_channels), "dry_run": _bool,
}
assert set(_CONVERT) == set(NAMES)

#: settings a file may not hold (they say what to do with it, per call)
_FLAG_ONLY = ("host", "monitor", "dry_run")


# --------------------------------------------------------------------------
# the TOML file
# --------------------------------------------------------------------------

def _toml_module():
    try:
        import tomllib
        return tomllib
    except ModuleNotFoundError:       # Python 3.10
        try:
            import tomli
            return tomli
        except ModuleNotFoundError:
            raise ConfigurationError(
                "reading a TOML configuration needs Python >= 3.11 (tomllib) or the tomli "
                "package on Python 3.10 (pip install tomli)") from None


def read_toml(path: str) -> dict:
    """The parsed TOML file (ConfigurationError if missing or invalid)."""
    toml = _toml_module()
    try:
        with open(path, "rb") as f:
            return toml.load(f)
    except OSError as exc:
        raise ConfigurationError(f"configuration file {path!r}: {exc.strerror or exc}") from None
    except toml.TOMLDecodeError as exc:
        raise ConfigurationError(f"configuration file {path!r} is not valid TOML: {exc}") from None


def _keys(table: dict, where: str) -> dict:
    """``table`` with its keys as setting names; unknown keys are errors."""
    out = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in NAMES or name in _FLAG_ONLY:
            allowed = ", ".join(n.replace("_", "-") for n in NAMES if n not in _FLAG_ONLY)
            raise ConfigurationError(f"{where}: unknown key {key!r}; the keys are the long "
                                     f"flag names: {allowed}")
        out[name] = value
    return out


def this_host() -> str:
    """This machine's short host name (what [hosts.NAME] tables are matched against)."""
    return socket.gethostname().split(".")[0]


def resolve(flags: dict, file: Optional[dict] = None, where: str = "configuration",
            hostname: Optional[str] = None) -> LaunchSettings:
    """The settings from the flags given (setting name -> value, only those
    on the command line) over the file's host table over its top level.

    With ``[hosts.*]`` tables: ``node``/``n_nodes`` come from this host's
    place among them (``host`` flag, else ``hostname``, else this machine's
    name); a host that is not listed is an error, except with ``monitor``."""
    file = dict(file or {})
    hosts = file.pop("hosts", None)
    merged = _keys(file, where)
    if hosts is not None:
        if not isinstance(hosts, dict) or not all(isinstance(v, dict) for v in hosts.values()):
            raise ConfigurationError(f"{where}: hosts must be tables, [hosts.NAME]")
        host = flags.get("host") or hostname or this_host()
        if host in hosts:
            merged["n_nodes"] = len(hosts)
            merged["node"] = list(hosts).index(host) + 1
            merged.update(_keys(hosts[host], f"{where} [hosts.{host}]"))
        elif flags.get("monitor") is None:
            raise ConfigurationError(
                f"{where}: this host {host!r} has no [hosts.{host}] table (hosts: "
                f"{', '.join(hosts)}); pass --host NAME to run as one of them")
        else:
            merged["n_nodes"] = len(hosts)
        merged["host"] = host
    merged.update(flags)
    return LaunchSettings(**merged)


def resolve_nodes(flags: dict, file: Optional[dict] = None,
                  where: str = "configuration") -> list:
    """The settings of every node: one per ``[hosts.*]`` table of the file
    (in order), else ``n_nodes`` copies of the flags' settings numbered 1..n."""
    hosts = (file or {}).get("hosts")
    if isinstance(hosts, dict) and hosts:
        return [resolve({**flags, "host": host}, file, where) for host in hosts]
    base = resolve(flags, file, where)
    return [dataclasses.replace(base, node=k) for k in range(1, base.n_nodes + 1)]
