"""pvagpu-consumer: run a processor on an area-detector (NTNDArray) PVA stream.

The flags are pvapy-hpc-consumer's where the concept is the same, so a
pvapy command line works after renaming the command. Processor arguments
are JSON and consumer id lists (-cid) are read by a strict parser: neither
is ever evaluated as Python.

Exit status: 0 after a clean stop (runtime reached, control-channel stop,
SIGINT or SIGTERM); 2 for a bad command line or configuration (bad JSON,
a processor file or class that cannot be loaded, ...); 1 for a failure at
run time.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys

from ..consumer import Consumer
from ..errors import ConfigurationError
from ..memory import tune_malloc
from ..pva.receiver import parse_field_request
from ..report import SECTIONS, Reporter, parse_report_stats, summary_line
from ..runtime.config import ConsumerConfig, distributor_oid_offset
from ..runtime.delivery import DEFAULT_FRAME_QUEUE_SIZE
from ..runtime.loading import load_processor_class, parse_processor_args
from ..runtime.naming import format_id, parse_id_list

EPILOG = """\
examples:
  # statistics of every frame of a pvapy simulation server, printed every 5 s
  pvagpu-consumer -ic pvapy:image -pf examples/frame_stats.py -pc FrameStatsProcessor \\
      -pa '{"threshold": 10}' -rp 5 -dc

  # republish frames with status and control channels named pvapy:consumer:1:*
  pvagpu-consumer -ic 13SIM1:Pva1:Image -oc _ -sc _ -cc _ -rqs 500 -sqs 100

  # a processor class from an installed module, run for one minute
  pvagpu-consumer -ic det:image -pc pvagpu.processors:FrameCounter -rt 60

  # two consumers sharing the frames of a pvapy server (its pydistributor plugin):
  # each gets every other frame; -du 1 with -nc 2 sets the id offset to 2
  pvagpu-consumer -ic pvapy:image -nc 2 -du 1 -sc 'c:*:status'
  # the same as two separate commands (-oo as -nc would set it)
  pvagpu-consumer -ic pvapy:image -id 1 -du 1 -oo 2 &
  pvagpu-consumer -ic pvapy:image -id 2 -du 1 -oo 2 &

  # two client sets, each getting 5 frames in turn, two consumers per set
  # receiving every frame of the set's turn
  pvagpu-consumer -ic pvapy:image -nc 2 -ds A -du 5 -nds 2 &
  pvagpu-consumer -ic pvapy:image -id 3 -nc 2 -ds B -du 5 -nds 2 &

  # consumers 2, 5 and 8, one process each, with status channels
  # pvapy:consumer:002:status, ...:005:status, ...:008:status
  pvagpu-consumer -ic pvapy:image -cid 'range(2,9,3)' -ifs 03d -sc _

  # ask the server for uniqueId and the compressed size only (no pixels), for a
  # processor of yours that needs no more
  pvagpu-consumer -ic pvapy:image -fr compressedSize -pf my_proc.py -pc SizeLogger

  # talk to a running consumer through its control channel (p4p or pvput)
  python -m p4p.client.cli put pvapy:consumer:1:control \\
      'command=configure' 'args={"threshold": 20}'
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pvagpu-consumer", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("-ic", "--input-channel", required=True, metavar="NAME",
      help="input PVA channel (NTNDArray) to monitor; '*' becomes the consumer id. "
           "Example: -ic 13SIM1:Pva1:Image")
    a("-oc", "--output-channel", metavar="NAME",
      help="output channel served by this consumer, where the processor publishes "
           "(updateOutputChannel); '_' means pvapy:consumer:<id>:output, '*' becomes the id. "
           "Example: -oc proc:*:image")
    a("-sc", "--status-channel", metavar="NAME",
      help="status channel with the statistics (pvapy's structure plus pvagpu fields); "
           "'_' means pvapy:consumer:<id>:status. Example: -sc _")
    a("-cc", "--control-channel", metavar="NAME",
      help="control channel accepting the commands configure, reset_stats, get_stats and "
           "stop; '_' means pvapy:consumer:<id>:control. Example: -cc _")
    a("-pf", "--processor-file", metavar="FILE",
      help="Python file that defines the processor class named by -pc. "
           "Example: -pf examples/frame_stats.py -pc FrameStatsProcessor")
    a("-pc", "--processor-class", metavar="CLASS",
      help="processor class: a class name with -pf, else module:Class or module.Class; "
           "without it frames pass through to the output channel. "
           "Example: -pc pvagpu.processors:FrameCounter")
    a("-pa", "--processor-args", metavar="JSON",
      help="JSON object given to the processor's constructor (configDict), with the "
           "framework's keys added. Example: -pa '{\"threshold\": 10}'")
    a("-of", "--oid-field", default="uniqueId", metavar="FIELD",
      help="object id field used to count missed frames (default: %(default)s). "
           "Example: -of uniqueId")
    a("-oo", "--oid-offset", type=int, default=0, metavar="N",
      help="id step between consecutive frames meant for this consumer, for counting missed "
           "frames; <= 0 (default) means automatic: with -du U, (N-1)*U+1 for N consumers "
           "(-nc) in one set or for N sets (-nds), else 1 (every frame). Give it when "
           "consumers sharing frames run as separate commands. With U > 1 a consumer's "
           "frames come in turns of U consecutive ids, and missed frames are counted "
           "inside and across turns, as pvapy counts them. "
           "Example: -oo 4 when 4 consumers share frames round-robin")
    a("-siu", "--skip-initial-updates", type=int, default=1, metavar="N",
      help="number of first updates not processed, e.g. the value that the server sends "
           "on connect (default: %(default)s). Example: -siu 0 behind another consumer")
    a("-sqs", "--server-queue-size", type=int, default=0, metavar="N",
      help="monitor queue on the server (record[queueSize=N]); 0 leaves the server's "
           "default. Example: -sqs 100")
    a("-rqs", "--receiver-queue-size", type=int, default=0, metavar="N",
      help="<= 0 (default): process each frame on the PVA client thread as it arrives "
           "(pvapy's -rqs -1, the fastest path); the frames arriving meanwhile wait in the "
           "monitor queue (-sqs), and what overflows it shows as missed. > 0: a queue of N "
           "frames between receiving and processing; when full, new frames are dropped and "
           "counted as overruns (-ao uses a queue of "
           f"{DEFAULT_FRAME_QUEUE_SIZE} unless N is given). Example: -rqs 1000")
    a("-ao", "--accumulate-objects", type=int, default=0, metavar="N",
      help="process frames in batches of up to N (processBatch(list) if the processor has "
           "it, else process() on each); <= 1 processes one at a time. Example: -ao 16")
    a("-at", "--accumulation-timeout", type=float, default=1.0, metavar="SECONDS",
      help="with -ao, process a smaller batch when N frames have not arrived within this "
           "time of the first (default: %(default)s). Example: -at 0.5")
    a("-mc", "--metadata-channels", metavar="LIST",
      help="comma-separated metadata channels, pva://NAME or ca://NAME (a bare NAME is CA); "
           "the processor reads them from metadataQueueMap[NAME]. "
           "Example: -mc pva://x:position,ca://x:energy")
    a("-rt", "--runtime", type=float, default=0.0, metavar="SECONDS",
      help="stop after this many seconds; <= 0 runs until stopped. Example: -rt 60")
    a("-rp", "--report-period", type=float, default=0.0, metavar="SECONDS",
      help="show the statistics every this many seconds (live table on a terminal, one log "
           "line otherwise or with -dc); <= 0 shows only the summary at exit. Example: -rp 5")
    a("-rs", "--report-stats", default="all", metavar="LIST",
      help=f"statistics groups to show: comma list of {', '.join(SECTIONS)} or all "
           f"(default: %(default)s). Example: -rs receiver,processor")
    a("-ll", "--log-level", metavar="LEVEL", type=str.upper,
      choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
      help="log level (default: warnings and errors only). Example: -ll info")
    a("-lf", "--log-file", metavar="FILE",
      help="write the log to this file instead of standard error. Example: -lf consumer.log")
    a("-id", "--consumer-id", type=int, default=1, metavar="ID",
      help="consumer id, used in '*' and '_' channel names and given to the processor as "
           "processorId (default: %(default)s). Example: -id 3")
    a("-nc", "--n-consumers", type=int, default=1, metavar="N",
      help="run N consumers as N processes with ids id..id+N-1; each receives EVERY frame "
           "unless a distributor option (-dg, -ds, -dt, -du) shares them out, and needs '*' "
           "in its channel names to keep them apart. Example: -nc 4 -sc 'c:*:status'")
    a("-cid", "--consumer-id-list", type=_id_list_arg, metavar="LIST",
      help="consumer ids as a comma-separated list or range(first,last+1[,step]); overrides "
           "-id and -nc: one consumer process per id (as -nc), N = the number of ids (also "
           "for the automatic -oo). Read by a strict parser, never evaluated as Python. "
           "Example: -cid 1,3,7 or -cid 'range(2,10,2)'")
    a("-ifs", "--id-format-spec", type=_id_format_arg, metavar="SPEC",
      help="Python format spec for the consumer id where it goes into channel names ('*' "
           "in -ic/-oc/-sc/-cc and the '_' names); the processorId and the status "
           "channel's consumerId stay numbers. Example: -ifs 03d makes -sc _ "
           "pvapy:consumer:007:status for consumer 7")
    a("-fr", "--field-request", default="", type=_field_request_arg, metavar="FIELDS",
      help="ask the server for these fields only, a comma-separated list of field names or "
           "dotted paths, optionally written field(...); the -of field is always added. The "
           "processor gets frames with just these fields: a pvapy (pvDatabase) server sends "
           "a structure of them, a p4p/pvxs server the whole structure with only them filled "
           "in. Ignored, with a warning, with the distributor (-dg, -ds, -dt, -du), as "
           "pvapy does; given to the processor as configDict['fieldRequest'] "
           "(default: all fields). Example: -fr 'value,codec,dimension'")
    a("-dpn", "--distributor-plugin-name", default="pydistributor", metavar="NAME",
      help="server-side distributor plugin used by -dg/-ds/-dt/-du: pydistributor in pvapy "
           "servers (pvapy-ad-sim-server, pvapy-mirror-server), distributor in pvDatabase "
           "(default: %(default)s). pvxs servers (p4p, NDPluginPvxs) have none and send "
           "every frame. Example: -dpn distributor")
    a("-dg", "--distributor-group", metavar="GROUP",
      help="distributor client group: the server shares the frames between the clients "
           "(or sets) of a group; groups are independent (server default: 'default'). "
           "Example: -dg detector1")
    a("-ds", "--distributor-set", metavar="SET",
      help="distributor client set: sets of a group take turns, and every client of the "
           "set gets the set's frames (server default: one set). Example: -ds A")
    a("-dt", "--distributor-trigger", metavar="FIELD",
      help="field whose change makes an update count for the distributor (server default: "
           "timeStamp). Example: -dt uniqueId")
    a("-du", "--distributor-updates", type=int, metavar="U",
      help="number of consecutive frames a client (or set) gets per turn; also sets the "
           "automatic -oo. Example: -du 1")
    a("-nds", "--n-distributor-sets", type=int, default=1, metavar="N",
      help="number of distributor sets sharing the group, used only for the automatic -oo; "
           "> 1 needs -ds (default: %(default)s). Example: -nds 2 -ds A")
    a("-dc", "--disable-curses", action="store_true",
      help="no live table: plain periodic log lines even on a terminal")
    a("--gpu", type=_gpu_choice, metavar="auto|none|N",
      help="device for GPU processors (GpuAdImageProcessor subclasses), given to the processor "
           "as configDict['gpu']: auto = the first CUDA device if CuPy finds one, else NumPy; "
           "none = NumPy; N = CUDA device N (an error if it is not there). The backend and "
           "device in use show in the status channel's userStats. Example: --gpu 0")
    return p


def _gpu_choice(text: str) -> str:
    """--gpu: 'auto', 'none' or a device number."""
    if text in ("auto", "none") or (text.isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, none or a device number, got {text!r}")


def _id_list_arg(text: str) -> list:
    """-cid: the consumer ids (strict parser, never eval)."""
    try:
        return parse_id_list(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _id_format_arg(text: str) -> str:
    """-ifs: a format spec that formats an integer id."""
    try:
        format_id(1, text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _field_request_arg(text: str) -> str:
    """-fr: checked here, kept as written (the processor's configDict
    gets it as given, as in pvapy)."""
    try:
        parse_field_request(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _setup_logging(level: str | None, log_file: str | None) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level) if level else logging.WARNING)


def config_from_args(args) -> ConsumerConfig:
    """The ConsumerConfig of one consumer's command line (after main() has
    resolved -cid/-nc into -id and the automatic -oo)."""
    return ConsumerConfig(
        args.input_channel, consumer_id=args.consumer_id,
        output_channel=args.output_channel, status_channel=args.status_channel,
        control_channel=args.control_channel, processor_file=args.processor_file,
        processor_class=args.processor_class, processor_args=args.processor_args,
        gpu=args.gpu, oid_field=args.oid_field, oid_offset=args.oid_offset,
        skip_initial_updates=args.skip_initial_updates,
        server_queue_size=args.server_queue_size, receiver_queue_size=args.receiver_queue_size,
        accumulate_objects=args.accumulate_objects,
        accumulation_timeout=args.accumulation_timeout, metadata_channels=args.metadata_channels,
        runtime=args.runtime, report_period=args.report_period, distributor=_distributor(args),
        distributor_plugin=args.distributor_plugin_name, id_format_spec=args.id_format_spec,
        field_request=args.field_request)


def _consumer_from_args(args):
    """The Consumer of one command line (ConfigurationError if bad)."""
    parse_report_stats(args.report_stats)   # a bad -rs fails before anything is built
    return Consumer(config_from_args(args))


def _reporter_for(args):
    """The live report (-rp > 0), else None."""
    if args.report_period <= 0:
        return None
    # the live table would fight with log lines written to the terminal
    logging_to_terminal = bool(args.log_level and not args.log_file)
    return Reporter(args.report_stats, disable_curses=args.disable_curses or logging_to_terminal)


def _distributor(args) -> dict | None:
    """The distributor options given on the command line (None if none)."""
    options = {"group": args.distributor_group, "set": args.distributor_set,
               "trigger": args.distributor_trigger, "updates": args.distributor_updates}
    return options if any(v is not None for v in options.values()) else None


def _run_one(args) -> int:
    tune_malloc()
    try:
        consumer = _consumer_from_args(args)
    except ConfigurationError as exc:
        print(f"pvagpu-consumer: error: {exc}", file=sys.stderr)
        return 2
    reporter = _reporter_for(args)
    if reporter is not None:
        consumer.on_stats.append(reporter.update)

    def on_signal(signum, frame):
        consumer.request_stop()
        # a second signal ends the process the ordinary way
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stats = consumer.run()
    except ConfigurationError as exc:
        consumer.shutdown()
        print(f"pvagpu-consumer: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        logging.getLogger("pvagpu.consumer").exception("consumer failed")
        consumer.shutdown()
        print(f"pvagpu-consumer: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        if reporter is not None:
            reporter.close()
    print(summary_line(stats), flush=True)
    return 0


def _child_argv(parser, args, consumer_id: int) -> list:
    """Command line of one child consumer (-nc 1, its own id, no curses)."""
    argv = []
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "n_consumers", "consumer_id",
                                                        "consumer_id_list", "disable_curses"):
            continue
        value = getattr(args, action.dest)
        if value is None or value == action.default and action.dest != "input_channel":
            continue
        option = action.option_strings[-1]
        argv += [f"{option}={value}"]
    return argv + [f"--consumer-id={consumer_id}", "--n-consumers=1", "--disable-curses"]


def _run_many(parser, args, consumer_ids) -> int:
    """-nc N or -cid LIST: one child process per consumer id, each a full
    consumer receiving every frame (unless the distributor shares them)."""
    try:  # check the configuration once, before starting N processes
        parse_report_stats(args.report_stats)
        parse_processor_args(args.processor_args)
        load_processor_class(args.processor_file, args.processor_class)
    except ConfigurationError as exc:
        print(f"pvagpu-consumer: error: {exc}", file=sys.stderr)
        return 2
    children = []
    for cid in consumer_ids:
        argv = [sys.executable, "-m", "pvagpu.cli.consumer"] + _child_argv(parser, args, cid)
        children.append(subprocess.Popen(argv, env=os.environ.copy()))

    def forward(signum, frame):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        codes = [child.wait() for child in children]
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    print(f"pvagpu-consumer: {len(children)} consumers finished, exit codes "
          f"{', '.join(map(str, codes))}", flush=True)
    return max(codes, key=abs) if any(codes) else 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.log_file)
    if args.consumer_id_list is not None:  # overrides -id and -nc, as in pvapy
        consumer_ids = args.consumer_id_list
    else:
        if args.n_consumers < 1:
            parser.error("--n-consumers must be at least 1")
        consumer_ids = list(range(args.consumer_id, args.consumer_id + args.n_consumers))
    args.consumer_id, args.n_consumers = consumer_ids[0], len(consumer_ids)
    if args.id_format_spec:
        try:
            for cid in consumer_ids:
                format_id(cid, args.id_format_spec)
        except ConfigurationError as exc:
            parser.error(str(exc))
    if args.distributor_updates is not None and args.distributor_updates < 1:
        parser.error("--distributor-updates must be at least 1")
    if args.n_distributor_sets > 1 and args.distributor_set is None:
        parser.error("--n-distributor-sets > 1 needs --distributor-set")
    # the id step of each consumer; children get it as -oo
    args.oid_offset = distributor_oid_offset(
        args.oid_offset, n_consumers=args.n_consumers,
        distributor_updates=args.distributor_updates, n_distributor_sets=args.n_distributor_sets)
    if len(consumer_ids) > 1:
        return _run_many(parser, args, consumer_ids)
    return _run_one(args)


if __name__ == "__main__":
    sys.exit(main())
