"""pvagpu-consumer's command line: the flags, each with its help and an
example, and the checks of their values (argparse types). The command
itself (mapping the flags to a ConsumerConfig, running one or several
consumers) is :mod:`pvagpu.cli.consumer`.
"""
from __future__ import annotations

import argparse
import json

from .. import __version__
from ..errors import ConfigurationError
from ..gpu.backend import parse_gpu_spec
from ..pva.monitor_queue import DEFAULT_QUEUE_MEMORY, MAX_QUEUE_SIZE, MIN_QUEUE_SIZE
from ..pva.receiver import parse_field_request
from ..report import SECTIONS
from ..runtime.config import parse_mode
from ..runtime.delivery import DEFAULT_FRAME_QUEUE_SIZE
from ..runtime.naming import format_id, parse_id_list
from ..runtime.workers import parse_gpu_list

DESCRIPTION = "pvagpu-consumer: run a processor on an area-detector (NTNDArray) PVA stream.\n\nThe flags are pvapy-hpc-consumer's where the concept is the same, so a\npvapy command line works after renaming the command. Processor arguments\nare JSON and consumer id lists (-cid) are read by a strict parser: neither\nis ever evaluated as Python.\n\nExit status: 0 after a clean stop (runtime reached, control-channel stop,\nSIGINT or SIGTERM); 2 for a bad command line or configuration (bad JSON,\na processor file or class that cannot be loaded, ...); 1 for a failure at\nrun time.\n"

AUTO_REPORT_PERIOD = 1.0

EPILOG = """\
examples:
  # statistics of every frame of a pvapy simulation server, printed every 5 s
  pvagpu-consumer -ic pvapy:image -pf examples/frame_stats.py -pc FrameStatsProcessor \\
      -pa '{"threshold": 10}' -rp 5 -dc

  # republish frames with status and control channels named pvapy:consumer:1:*;
  # operators alice (any host) and members of group ops on ctl01 may command it
  pvagpu-consumer -ic 13SIM1:Pva1:Image -oc _ -sc _ -cc _ -rqs 500 -sqs 100 \\
      --control-allow 'alice@*,role/ops@ctl01'

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

  # a CPU-heavy processor in 4 worker processes; this process only receives
  pvagpu-consumer -ic det:image -pf my_proc.py -pc Heavy --n-workers 4 -sc _ -oc _

  # a GPU processor with two workers on each of GPUs 0 and 1 (decoding on the GPUs)
  pvagpu-consumer -ic det:image -pf examples/gpu_frame_stats.py -pc GpuFrameStats \
      --n-workers 4 --gpus 0,1

  # talk to a running consumer through its control channel (p4p or pvput)
  python -m p4p.client.cli put pvapy:consumer:1:control \\
      'command=configure' 'args={"threshold": 20}'
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pvagpu-consumer", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("-v", "--version", action="version", version=f"%(prog)s {__version__}",
      help="print the version and exit. Example: -v")
    a("-ic", "--input-channel", required=True, metavar="NAME",
      help="input PVA channel (NTNDArray) to monitor, or to serve with -im pvas/rpc, or a "
           "Channel Access PV with -im ca; '*' becomes the consumer id. "
           "Example: -ic 13SIM1:Pva1:Image")
    a("-im", "--input-mode", default="pva", type=_mode_arg("input"), metavar="MODE",
      help="how frames come in, as pvapy's: pva (default) monitors the input channel on "
           "its server; pvas serves the input channel as a record on this consumer's "
           "server, and producers PUT frames into it (an upstream consumer with -om pva, a "
           "pvput); rpc serves it as an RPC service that producers call with each frame "
           "(-om rpc). The record's structure is the processor's getInputPvObjectType(), "
           "an NTNDArray by default. -siu applies in every mode, so give -siu 0 with "
           "pvas/rpc, as pvapy's documentation does. ca monitors a Channel Access PV "
           "(needs pyepics: pip install 'pvagpu[ca]'); the processor gets each update as an "
           "NTScalar (NTScalarArray for a waveform, NTEnum for an enum) with value, alarm, "
           "timeStamp and the PV's display/control limits, and each update counts as a "
           "frame (no uniqueId: missed frames are not counted). "
           "Examples: -im pvas -siu 0; -im ca -ic IOC:temperature -pf avg.py -pc Average")
    a("-ia", "--input-args", type=_json_object_arg, metavar="JSON",
      help="JSON object given to the processor as configDict['inputArgs'] (pvapy uses it "
           "for its EJFAT receiver only). Example: -ia '{\"site\": \"A\"}'")
    a("-om", "--output-mode", default="pvas", type=_mode_arg("output"), metavar="MODE",
      help="how output goes out, as pvapy's: pvas (default) serves the output channel on "
           "this consumer's server; pva PUTs every published object into a record of that "
           "name on another server (a consumer with -im pvas); rpc sends it as an RPC to a "
           "service of that name (-im rpc). Failed sends count in publisherStats.nErrors. "
           "Example: -om pva -oc stage2:1:input")
    a("-oa", "--output-args", type=_json_object_arg, metavar="JSON",
      help="JSON object given to the processor as configDict['outputArgs']. "
           "Example: -oa '{\"site\": \"B\"}'")
    a("-oc", "--output-channel", metavar="NAME",
      help="output channel served by this consumer, where the processor publishes "
           "(updateOutputChannel); '_' means pvapy:consumer:<id>:output, '*' becomes the id. "
           "Example: -oc proc:*:image")
    a("-sc", "--status-channel", metavar="NAME",
      help="status channel with the statistics (pvapy's structure plus pvagpu fields); "
           "'_' means pvapy:consumer:<id>:status. Example: -sc _")
    a("-cc", "--control-channel", metavar="NAME",
      help="control channel accepting the commands configure, reset_stats, get_stats and "
           "stop from the clients that --control-allow names (by default only the account "
           "running this consumer, from this host); '_' means pvapy:consumer:<id>:control. "
           "Example: -cc _")
    a("--control-allow", metavar="LIST",
      help="who may command the control channel: comma-separated WHO@WHERE entries; WHO is "
           "an account, role/GROUP (a group of this host) or *, WHERE is localhost, a host "
           "name, an address, a network (10.0.4.0/24) or *; @WHERE means any account from "
           "there; 'any' opens it to every client that can reach it (pvapy's behaviour). "
           "The account is what the client claims; the host is its TCP address. Refused "
           "commands fail with 'Access denied' and are counted. Default: the account running "
           "the consumer @localhost. Example: --control-allow 'alice@*,@10.0.4.0/24'")
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
      help="monitor queue on the server (record[queueSize=N]): frames held for this "
           "consumer while it is busy; what overflows is missed. 0 (default): as many frames "
           f"as {DEFAULT_QUEUE_MEMORY // 2**20} MiB holds ({MIN_QUEUE_SIZE} to {MAX_QUEUE_SIZE}), "
           "the frame size read by a GET of the channel's size fields before subscribing; the "
           "choice is printed at start. Example: -sqs 100")
    a("-rqs", "--receiver-queue-size", type=int, metavar="N",
      help="< 0 or not given: process each frame on the PVA client thread as it arrives "
           "(pvapy's -rqs -1, the fastest path); the frames arriving meanwhile wait in the "
           "monitor queue (-sqs), and what overflows it shows as missed. > 0: a queue of N "
           "frames between receiving and processing; when full, new frames are dropped and "
           "counted as overruns (-ao uses a queue of "
           f"{DEFAULT_FRAME_QUEUE_SIZE} unless N is given). 0, pvapy's unbounded queue, "
           f"gives a queue of {DEFAULT_FRAME_QUEUE_SIZE}, with a warning at start: memory "
           "stays bounded. Example: -rqs 1000")
    a("-ao", "--accumulate-objects", type=int, default=0, metavar="N",
      help="process frames in batches of up to N (processBatch(list) if the processor has "
           "it, else process() on each); <= 1 processes one at a time. With --n-workers each "
           "worker batches the frames it gets. Example: -ao 16")
    a("-at", "--accumulation-timeout", type=float, default=1.0, metavar="SECONDS",
      help="with -ao, process a smaller batch when N frames have not arrived within this "
           "time of the first (default: %(default)s). Example: -at 0.5")
    a("-mc", "--metadata-channels", metavar="LIST",
      help="comma-separated metadata channels, pva://NAME or ca://NAME (a bare NAME is CA); "
           "the processor reads them from metadataQueueMap[NAME]. With --n-workers each worker "
           "subscribes itself and sees every update. Example: -mc pva://x:position,ca://x:energy")
    a("-rt", "--runtime", type=float, default=0.0, metavar="SECONDS",
      help="stop after this many seconds; <= 0 runs until stopped. Example: -rt 60")
    a("-rp", "--report-period", type=float, metavar="SECONDS",
      help="show the statistics every this many seconds (live table on a terminal, one log "
           "line otherwise or with -dc); <= 0 shows only the summary at exit. Default: a live "
           f"table every {AUTO_REPORT_PERIOD:g} s when standard output is a terminal (and no "
           "-dc, no log to the terminal), else only the summary. Example: -rp 5, -rp 0")
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
    a("-ifs", "--id-format-spec", type=id_format_arg, metavar="SPEC",
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
           "(default: %(default)s). pvxs servers (pvagpu-sim-server, a pvagpu consumer's "
           "output, p4p, NDPluginPvxs) have none: the consumer says so once and receives every "
           "frame (missed-frame offset 1); share such a stream through pvapy-mirror-server "
           "(README, Scaling out). Example: -dpn distributor")
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
    a("--n-workers", type=int, metavar="N",
      help="run the processor in N worker processes, each with its own instance loaded from "
           "-pf/-pc/-pa; this process only receives and hands each frame, still compressed, "
           "to the least-loaded worker through shared memory (decoding happens in the worker). "
           "0: process here. Default: one worker per visible GPU for a GPU processor with "
           "--gpu auto (or no --gpu), else none. The status channel and the live table show "
           "worker<N>Stats per worker; a worker that dies is reported, its frames in flight are "
           "counted as errors by uniqueId, and it is restarted. Example: --n-workers 4")
    a("--gpus", type=_gpu_list_arg, metavar="LIST",
      help="GPUs the workers are bound to, in turn (worker k gets GPU k mod the list's length; "
           "it sees only that device); the default number of workers is then one per GPU. "
           "Without it: --gpu N binds every worker to N, --gpu none none, and --gpu auto the "
           "visible GPUs in turn. Example: --gpus 0,1,2,3 or --n-workers 8 --gpus 0,1")
    return p


def _gpu_choice(text: str) -> str:
    """--gpu: 'auto', 'none' or a device number (checked by the one parser,
    pvagpu.gpu.backend.parse_gpu_spec; the text goes to the processor)."""
    try:
        parse_gpu_spec(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _gpu_list_arg(text: str) -> str:
    """--gpus: device numbers, comma-separated (kept as text for -nc children)."""
    try:
        parse_gpu_list(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _id_list_arg(text: str) -> list:
    """-cid: the consumer ids (strict parser, never eval)."""
    try:
        return parse_id_list(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def id_format_arg(text: str) -> str:
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


def _mode_arg(kind: str):
    """-im / -om: a mode pvagpu runs (ConfigurationError's reason otherwise)."""
    def parse(text: str) -> str:
        try:
            return parse_mode(text, kind)
        except ConfigurationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse


def _json_object_arg(text: str) -> str:
    """-ia / -oa: JSON text of an object, kept as written (pvapy's processors
    get the text)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return text
