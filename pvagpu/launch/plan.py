"""The children of one node: which processes pvagpu-launch starts, with which command lines.

Pure functions of :class:`~pvagpu.launch.settings.LaunchSettings` (and the
GPUs visible here), so that ``--dry-run`` and the tests see exactly what
would run:

* a simulated detector, ``pvagpu-sim-server`` with the ``--sim`` arguments;
* a mirror, ``pvapy-mirror-server -cm (INPUT,SOURCE,pva,QUEUE)``: it serves
  the source channel again from a pvDatabase record, whose distributor
  plugin (``pydistributor``, or pvDatabase's ``distributor``) shares the
  frames between the consumers of a group. It is the route for a source
  whose server has no such plugin (pvagpu-sim-server, p4p, NDPluginPvxs);
  it comes with pvapy: ``pip install 'pvagpu[distributor]'``;
* the consumers, ``pvagpu-consumer``: one per GPU (``--gpu i``; or
  ``--consumers N`` spread over the GPUs, N CPU consumers without GPUs),
  or ONE with per-GPU worker processes (``--n-workers N --gpus LIST``).

Consumer ids are unique over all nodes (node k's ids follow those of the
nodes before it), and each consumer gets the id step of the whole group
(``-oo``: the consumers of all nodes share the frames), its status channel
``NAME:<id>:status`` and control channel ``NAME:<id>:control``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..errors import ConfigurationError
from ..runtime.config import distributor_oid_offset
from .settings import LaunchSettings

#: where pvapy-mirror-server comes from, for the error when it is missing
MIRROR_SERVER = "pvapy-mirror-server"
EXTRA_HINT = "pip install 'pvagpu[distributor]' (it installs pvapy)"

SOURCE, CONSUMER = "source", "consumer"


@dataclass
class ChildSpec:
    """One process to start: its display name, role, command line, and for
    a consumer its id, device(s) and status channel."""
    name: str
    role: str
    argv: List[str]
    consumer_id: Optional[int] = None
    gpu: Optional[str] = None
    status_channel: Optional[str] = None


def gpu_list(settings: LaunchSettings, visible: Sequence[int] = ()) -> List[str]:
    """The devices the consumers use: ``visible`` (the GPUs found here) for
    ``auto``, none for ``none``, else the listed numbers."""
    if settings.gpus == "auto":
        return [str(i) for i in visible]
    if settings.gpus == "none":
        return []
    return settings.gpus.split(",")


def consumer_count(settings: LaunchSettings, gpus: Sequence[str]) -> int:
    """Consumers on a node: 1 with --n-workers, else --consumers, else one
    per GPU (one without GPUs)."""
    if settings.n_workers:
        return 1
    return settings.consumers or max(1, len(gpus))


def status_channel(prefix: str, consumer_id: int) -> str:
    return f"{prefix}:{consumer_id}:status"


def control_channel(prefix: str, consumer_id: int) -> str:
    return f"{prefix}:{consumer_id}:control"


def mirror_executable(path: Optional[str] = None) -> str:
    """The pvapy-mirror-server program (on PATH or beside this Python);
    a ConfigurationError naming the extra to install when it is missing."""
    search = os.pathsep.join([path if path is not None else os.environ.get("PATH", ""),
                              os.path.dirname(sys.executable)])
    found = shutil.which(MIRROR_SERVER, path=search)
    if not found:
        raise ConfigurationError(
            f"{MIRROR_SERVER} was not found: the mirror (--mirror), which shares a detector's "
            f"frames between consumers, is pvapy's; install it with {EXTRA_HINT}")
    return found


def _check_map_name(name: str, what: str) -> str:
    """A channel name that pvapy-mirror-server's -cm parser keeps whole."""
    if not name or any(c in name for c in ",()") or name != name.strip():
        raise ConfigurationError(f"{what} {name!r}: pvapy-mirror-server cannot take a channel "
                                 f"name that is empty or holds ',', '(', ')' or spaces at its ends")
    return name


def sim_spec(settings: LaunchSettings) -> ChildSpec:
    return ChildSpec("sim", SOURCE, [sys.executable, "-m", "pvagpu.cli.sim_server", "-dc"]
                     + list(settings.sim))


def mirror_spec(settings: LaunchSettings, path: Optional[str] = None) -> ChildSpec:
    """pvapy-mirror-server serving the consumers' input channel from the source."""
    source = _check_map_name(settings.mirror_source, "mirror source")
    mirror = _check_map_name(settings.consumer_input, "mirror channel")
    if mirror == source:
        raise ConfigurationError(f"the mirror cannot serve its source's name {source!r}: give "
                                 f"another --input-channel")
    channel_map = f"({mirror},{source},pva,{settings.mirror_queue_size})"
    return ChildSpec("mirror", SOURCE, [mirror_executable(path), "-cm", channel_map])


def consumer_specs(settings: LaunchSettings, gpus: Sequence[str], id_base: int = 0,
                   total: Optional[int] = None) -> List[ChildSpec]:
    """This node's consumers, with ids ``id_base + 1 ...``; ``total``: the
    consumers of all nodes sharing the group (default: this node's count
    times the number of nodes)."""
    count = consumer_count(settings, gpus)
    total = total if total is not None else count * settings.n_nodes
    common = ["-ic", settings.consumer_input]
    if settings.processor_file:
        common += ["-pf", settings.processor_file]
    if settings.processor_class:
        common += ["-pc", settings.processor_class]
    if settings.processor_args:
        common += ["-pa", json.dumps(settings.processor_args)]
    if not settings.no_distributor:
        common += ["-dg", settings.distributor_group, "-du", str(settings.distributor_updates),
                   "-dt", settings.distributor_trigger, "-dpn", settings.distributor_plugin_name,
                   "-oo", str(distributor_oid_offset(
                       n_consumers=total, distributor_updates=settings.distributor_updates))]
    specs = []
    for i in range(count):
        cid = id_base + i + 1
        if settings.n_workers:
            gpu = ",".join(gpus) if gpus else None
            device = ["--n-workers", str(settings.n_workers)] + (["--gpus", gpu] if gpu else [])
        else:
            gpu = gpus[i % len(gpus)] if gpus else None
            device = ["--gpu", gpu if gpu is not None else "none"]
        argv = ([sys.executable, "-m", "pvagpu.cli.consumer"] + common
                + ["-id", str(cid), "-sc", status_channel(settings.name, cid),
                   "-cc", control_channel(settings.name, cid), "-dc"]
                + device + list(settings.consumer_args))
        specs.append(ChildSpec(f"consumer {cid}", CONSUMER, argv, cid, gpu,
                               status_channel(settings.name, cid)))
    return specs


def node_layout(nodes: Sequence[LaunchSettings], node: int, gpus: Sequence[str]) -> tuple:
    """``(id_base, total)`` of node number ``node`` (1-based) among ``nodes``
    (every node's settings, from the file's [hosts.*] tables): its ids follow
    those of the nodes before it. A node whose GPUs are ``auto`` is counted
    with this node's GPUs."""
    counts = [consumer_count(s, gpu_list(s, range(len(gpus))) if s.gpus == "auto" else
                             gpu_list(s)) for s in nodes]
    return sum(counts[:node - 1]), sum(counts)


def plan(settings: LaunchSettings, gpus: Sequence[str], nodes: Sequence[LaunchSettings] = (),
         path: Optional[str] = None) -> List[ChildSpec]:
    """Every child of this node, sources first."""
    specs = []
    if settings.sim is not None:
        specs.append(sim_spec(settings))
    if settings.mirror is not None:
        specs.append(mirror_spec(settings, path))
    if nodes:
        id_base, total = node_layout(nodes, settings.node, gpus)
    else:
        id_base, total = (settings.node - 1) * consumer_count(settings, gpus), None
    return specs + consumer_specs(settings, gpus, id_base, total)


def monitored_channels(nodes: Sequence[LaunchSettings]) -> List[str]:
    """The status channels of every consumer of ``nodes`` (for --monitor
    without channel names); their GPUs must be listed, not ``auto``."""
    channels = []
    for node in nodes:
        if node.gpus == "auto" and not node.consumers and not node.n_workers:
            raise ConfigurationError(
                f"--monitor: node {node.node} has gpus = auto, so its consumers are not known "
                f"here; list the GPUs (gpus = \"0,1,2,3\") or name the status channels")
    id_base = 0
    for node in nodes:
        count = consumer_count(node, gpu_list(node))
        channels += [status_channel(node.name, id_base + i + 1) for i in range(count)]
        id_base += count
    return channels
