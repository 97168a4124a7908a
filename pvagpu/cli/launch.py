"""pvagpu-launch: run the consumers of a GPU node with one command, and watch them in one table.

It starts, on this node: optionally a simulated detector (--sim) and/or a
mirror server (--mirror) whose distributor plugin shares the frames; then
one pvagpu-consumer per GPU (each --gpu i, all in one distributor group),
or ONE consumer with a worker process per GPU (--n-workers), or N CPU
consumers without GPUs (--consumers N). It shows one live table built from
the consumers' status channels (frames/s, missed, errors, ring occupancy,
GPU memory and utilisation through NVML when pynvml is installed) and
reports a child that exits. Ctrl-C or SIGTERM stops everything (consumers
first: SIGINT, then SIGTERM and SIGKILL after --stop-timeout) and prints a
summary. The same command on several nodes, with the same group, spreads
the stream over all of them; --monitor shows the table of consumers
anywhere from their status channels alone.

Every flag can also be given in a TOML file (-c), as `long-flag-name =
value`; flags on the command line win. Exit status: 0 after a clean stop,
2 for a bad command line or configuration, 1 when a consumer failed.
"""
from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile

from ..errors import ConfigurationError
from ..launch.gpus import visible_gpus
from ..launch.launcher import Launcher
from ..launch.plan import consumer_count, gpu_list, monitored_channels, plan
from ..launch.screen import TableScreen
from ..launch.settings import read_toml, resolve, resolve_nodes
from ..pva.loopback import process_env

EPILOG = """\
examples:
  # a GPU node: one consumer per visible GPU on a detector mirrored with a distributor
  pvagpu-launch --mirror 13SIM1:Pva1:Image -pf examples/gpu_frame_stats.py \\
      -pc GpuFrameStats

  # the same with one consumer and a worker process per GPU
  pvagpu-launch --mirror 13SIM1:Pva1:Image --n-workers 4 --gpus 0,1,2,3 \\
      -pc pvagpu.processors:FrameCounter

  # a demo without a detector: simulated frames, mirrored, 3 CPU consumers, 60 s
  pvagpu-launch --sim="-nx 512 -ny 512 -fps 200 -rt 60" --mirror --gpus none \\
      --consumers 3 -pc pvagpu.processors:FrameCounter -pa '{"publish": false}'

  # four nodes sharing one stream: the same file on each (its [hosts.*] tables
  # say which node this is and which node runs the mirror)
  pvagpu-launch -c examples/launch_4x4.toml

  # a table of all consumers of that beamline, from any host
  pvagpu-launch -c examples/launch_4x4.toml --monitor
  pvagpu-launch --monitor pvagpu:1:status pvagpu:2:status

  # see the command lines without starting anything
  pvagpu-launch -c examples/launch_4x4.toml --host gpu02 --dry-run
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pvagpu-launch", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS)   # only the flags given: they override the file
    a = p.add_argument
    a("-c", "--config", metavar="FILE",
      help="TOML file with any of these settings (keys: the long flag names); flags given "
           "here win. Example: -c examples/launch_4x4.toml")
    a("--host", metavar="NAME",
      help="run as this [hosts.NAME] node of the file (default: this machine's short host "
           "name). Example: --host gpu02")
    g = p.add_argument_group("sources (optional)")
    g.add_argument("--sim", metavar="ARGS",
                   help="start pvagpu-sim-server with these arguments (one string; write "
                        "--sim=\"...\" when it starts with '-'). Example: "
                        "--sim=\"-cn sim:image -nx 1024 -ny 1024 -dt uint16 -fps 100\"")
    g.add_argument("--mirror", nargs="?", const="", metavar="SOURCE",
                   help="start pvapy-mirror-server serving SOURCE again as --input-channel "
                        "(default SOURCE:mirror), with the distributor plugin that shares the "
                        "frames: the route for a server without it (pvagpu-sim-server, p4p, "
                        "NDPluginPvxs). Without SOURCE: the --sim channel. Needs "
                        "pip install 'pvagpu[distributor]'. Example: --mirror 13SIM1:Pva1:Image")
    g.add_argument("--mirror-queue-size", metavar="N",
                   help="the mirror's monitor queue on the source (default 100). "
                        "Example: --mirror-queue-size 500")
    g = p.add_argument_group("consumers")
    g.add_argument("-ic", "--input-channel", metavar="NAME",
                   help="channel the consumers read (default: the mirror's or the simulator's). "
                        "Example: -ic bl:mirror:image")
    g.add_argument("--gpus", metavar="auto|none|LIST",
                   help="GPUs of this node: auto (those visible: CUDA_VISIBLE_DEVICES or NVML; "
                        "none without pynvml), none (CPU consumers) or device numbers "
                        "(default auto). Example: --gpus 0,1,2,3")
    g.add_argument("--consumers", metavar="N",
                   help="consumers on this node (default: one per GPU, one without GPUs); "
                        "more than GPUs share them round-robin. Example: --gpus none --consumers 4")
    g.add_argument("--n-workers", metavar="N",
                   help="ONE consumer with N worker processes over --gpus (pvagpu-consumer "
                        "--n-workers N --gpus LIST) instead of one consumer per GPU. "
                        "Example: --n-workers 4 --gpus 0,1,2,3")
    g.add_argument("-pf", "--processor-file", metavar="FILE",
                   help="processor file, as pvagpu-consumer's -pf. "
                        "Example: -pf examples/gpu_frame_stats.py")
    g.add_argument("-pc", "--processor-class", metavar="CLASS",
                   help="processor class, as pvagpu-consumer's -pc. "
                        "Example: -pc pvagpu.processors:FrameCounter")
    g.add_argument("-pa", "--processor-args", metavar="JSON",
                   help="processor arguments (JSON object), as pvagpu-consumer's -pa. "
                        "Example: -pa '{\"threshold\": 10}'")
    g.add_argument("--consumer-args", metavar="ARGS",
                   help="more pvagpu-consumer flags for every consumer (one string). "
                        "Example: --consumer-args=\"-sqs 100 -rqs 1000\"")
    g.add_argument("--name", metavar="PREFIX",
                   help="prefix of the consumers' channels PREFIX:<id>:status and "
                        "PREFIX:<id>:control (default pvagpu). Example: --name bl:pvagpu")
    g = p.add_argument_group("sharing the frames (the server's distributor plugin)")
    g.add_argument("-dg", "--distributor-group", metavar="GROUP",
                   help="distributor group of all consumers of all nodes (default pvagpu). "
                        "Example: -dg detector1")
    g.add_argument("-du", "--distributor-updates", metavar="U",
                   help="consecutive frames per consumer turn (default 1). Example: -du 4")
    g.add_argument("-dt", "--distributor-trigger", metavar="FIELD",
                   help="field whose change marks a new frame (default uniqueId). "
                        "Example: -dt timeStamp")
    g.add_argument("-dpn", "--distributor-plugin-name", metavar="NAME",
                   help="pydistributor (pvapy servers, pvapy-mirror-server) or distributor "
                        "(pvDatabase; pvapy-mirror-server has it too) (default pydistributor). "
                        "Example: -dpn distributor")
    g.add_argument("--no-distributor", action="store_true",
                   help="every consumer gets every frame (no distributor options)")
    g = p.add_argument_group("several nodes")
    g.add_argument("--n-nodes", metavar="M",
                   help="nodes running this same command (sets ids and -oo; default 1, or the "
                        "number of [hosts.*] tables). Example: --n-nodes 4 --node 2")
    g.add_argument("--node", metavar="K",
                   help="this node's number, 1..M (default 1, or this host's place among the "
                        "[hosts.*] tables). Example: --node 3")
    g.add_argument("--monitor", nargs="*", metavar="CHANNEL",
                   help="start nothing: show the table of the consumers whose status channels "
                        "are given (none: those of the configuration, every node). "
                        "Example: --monitor pvagpu:1:status pvagpu:2:status")
    g = p.add_argument_group("running")
    g.add_argument("-rt", "--runtime", metavar="SECONDS",
                   help="stop everything after this many seconds (default: at Ctrl-C). "
                        "Example: -rt 600")
    g.add_argument("-rp", "--report-period", metavar="SECONDS",
                   help="table refresh period (default 1). Example: -rp 2")
    g.add_argument("-dc", "--disable-curses", action="store_true",
                   help="write the table as plain text blocks, even on a terminal")
    g.add_argument("--log-dir", metavar="DIR",
                   help="directory for the children's output (default: a new temporary one). "
                        "Example: --log-dir logs/run7")
    g.add_argument("--stop-timeout", metavar="SECONDS",
                   help="seconds a child has to stop after SIGINT before SIGTERM, and after "
                        "SIGTERM before SIGKILL (default 10). Example: --stop-timeout 5")
    g.add_argument("--dry-run", action="store_true",
                   help="print the command lines this node would run, and exit")
    return p


def _settings(args):
    """(settings, every node's settings or [], file) from the parsed flags."""
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    path = getattr(args, "config", None)
    file = read_toml(path) if path else None
    where = path or "command line"
    settings = resolve(flags, file, where)
    has_hosts = bool(file and file.get("hosts"))
    nodes = resolve_nodes(flags, file, where) if has_hosts or settings.monitor is not None else []
    return settings, nodes


def _run(launcher: Launcher) -> int:
    def on_signal(signum, frame):
        launcher.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return launcher.run()
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings, nodes = _settings(args)
        if settings.monitor is not None:
            channels = settings.monitor or monitored_channels(nodes)
            specs = []
            title = f"pvagpu-launch --monitor: {len(channels)} status channels"
        else:
            gpus = gpu_list(settings, visible_gpus())
            specs = plan(settings, gpus, nodes if len(nodes) > 1 else ())
            channels = None
            title = (f"pvagpu-launch node {settings.node}/{settings.n_nodes}"
                     + (f" ({settings.host})" if settings.host else "")
                     + f": {settings.consumer_input}"
                     + ("" if settings.no_distributor else
                        f", group {settings.distributor_group}"))
    except ConfigurationError as exc:
        print(f"pvagpu-launch: error: {exc}", file=sys.stderr)
        return 2
    if settings.monitor is None and settings.sim is not None and settings.mirror is None \
            and not settings.no_distributor \
            and consumer_count(settings, gpus) * settings.n_nodes > 1:
        print("pvagpu-launch: warning: pvagpu-sim-server has no distributor plugin, so every "
              "consumer gets every frame; add --mirror to share them", file=sys.stderr)
    if settings.dry_run:
        for spec in specs:
            print(f"{spec.name}: {shlex.join(spec.argv)}")
        for channel in channels or []:
            print(f"monitor: {channel}")
        return 0
    if not specs and not channels:
        print("pvagpu-launch: error: nothing to run or watch", file=sys.stderr)
        return 2
    log_dir = settings.log_dir or (tempfile.mkdtemp(prefix="pvagpu-launch-") if specs else None)
    screen = TableScreen(disable_curses=settings.disable_curses)
    launcher = Launcher(specs, title=title, screen=screen, report_period=settings.report_period,
                        runtime=settings.runtime, stop_timeout=settings.stop_timeout,
                        log_dir=log_dir, env=process_env({}), channels=channels)
    try:
        return _run(launcher)
    except OSError as exc:
        print(f"pvagpu-launch: error: cannot start a child: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
