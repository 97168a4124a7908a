"""pvagpu-collector: gather the outputs of several producers, in object id order, and process them.

pvapy-hpc-collector's counterpart, with its flags: the collector monitors
one channel per producer (-ic with '*' for the producer id, -pid the ids),
puts what arrives into an ordering cache and hands it to its processor in
uniqueId order; objects of the same id (the tiles of one frame) go out
together. An id goes out as soon as every producer has sent a later one;
a full cache (-ccs), a quiet stream (--collector-flush) or the stop
release the rest, and what that costs (ids never received, objects that
came too late, early releases) is counted in collectorStats.

Exit status: 0 after a clean stop, 2 for a bad command line or
configuration, 1 for a failure at run time.
"""
from __future__ import annotations

import argparse
import copy
import sys

from .. import __version__
from ..collector import Collector, CollectorConfig
from ..errors import ConfigurationError
from ..report import parse_report_stats
from ..runtime.naming import parse_id_list
from . import consumer as consumer_cli
from . import consumer_args

EPILOG = """\
examples:
  # pvapy's split -> process -> collect: 2 consumers share the frames (distributor),
  # the collector puts their outputs back in uniqueId order on collector:1:output
  pvagpu-consumer -ic pvapy:image -oc 'process:*:output' -nc 2 -du 1 &
  pvagpu-collector -id 1 -pid 1,2 -ic 'process:*:output' -oc 'collector:*:output' \\
      -sc 'collector:*:status' -cc 'collector:*:control' -ccs 100 -rp 10

  # stitch the tiles that 4 consumers processed (pvapy's split/stitch example)
  pvagpu-collector -pid 'range(1,5)' -ic 'process:*:output' -oc _ \\
      -pf stitch.py -pc StitchAdImageProcessor -pa '{"nx": 3840, "ny": 2160}'
"""

#: flags whose meaning is the consumer's: defined once, in pvagpu.cli.consumer
SHARED_FLAGS = ("processor_file", "processor_class", "processor_args", "oid_field",
                "skip_initial_updates", "server_queue_size", "field_request",
                "metadata_channels", "runtime", "report_period", "report_stats", "log_level",
                "log_file", "disable_curses", "control_allow", "gpu")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pvagpu-collector", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("-v", "--version", action="version", version=f"%(prog)s {__version__}",
      help="print the version and exit. Example: -v")
    a("-id", "--collector-id", type=int, default=1, metavar="ID",
      help="collector id: '*' in -oc/-sc/-cc and the '_' names "
           "(pvapy:collector:<id>:output, ...:status, ...:control) become it; given to the "
           "processor as processorId (default: %(default)s). Example: -id 2")
    a("-pid", "--producer-id-list", type=_id_list_arg, default="1,2", metavar="LIST",
      help="producer ids, comma-separated or range(first,last+1[,step]); one input channel "
           "each (default: %(default)s). Read by a strict parser, never evaluated as Python. "
           "Example: -pid 1,2,3,4 or -pid 'range(1,5)'")
    a("-ic", "--input-channel", required=True, metavar="PATTERN",
      help="producer channel pattern: '*' becomes each producer id (formatted with -ifs). "
           "Example: -ic 'process:*:output'")
    a("-oc", "--output-channel", metavar="NAME",
      help="output channel served by the collector, where the processor publishes "
           "(updateOutputChannel; without a processor the objects pass through, in order); "
           "'_' means pvapy:collector:<id>:output, '*' becomes the collector id. "
           "Example: -oc 'collector:*:output'")
    a("-sc", "--status-channel", metavar="NAME",
      help="status channel: the consumer's statistics plus collectorStats and "
           "producerStats_<id>; '_' means pvapy:collector:<id>:status. Example: -sc _")
    a("-cc", "--control-channel", metavar="NAME",
      help="control channel (configure, reset_stats, get_stats, stop, as the consumer's; "
           "configure also takes collectorCacheSize); '_' means "
           "pvapy:collector:<id>:control. Example: -cc _")
    a("-ifs", "--id-format-spec", type=consumer_args.id_format_arg, metavar="SPEC",
      help="Python format spec of the producer and collector ids in channel names. "
           "Example: -ifs 03d makes -ic 'p:*:out' p:001:out, p:002:out")
    a("-ccs", "--collector-cache-size", type=int, default=-1, metavar="N",
      help="objects the cache holds while waiting for a slower producer; when full, the "
           "smallest id goes out anyway (counted in collectorStats.nOverflows; its late "
           "objects are then rejected). < 0 (default): 10 per producer; at least the number "
           "of producers (pvapy's rule). Example: -ccs 100")
    a("-rqs", "--receiver-queue-size", type=int, metavar="N",
      help="objects released in order and waiting for the processor; while full, new "
           "objects are refused and counted as overruns (collectorStats.nRefused). Not "
           f"given, < 0 or 0 (pvapy's unbounded queue, with a warning): "
           f"{consumer_args.DEFAULT_FRAME_QUEUE_SIZE}. Example: -rqs 2000")
    a("-oo", "--oid-offset", type=int, default=1, metavar="N",
      help="id step between consecutive objects of the ordered stream, for counting missed "
           "ids (default: %(default)s). Example: -oo 1")
    a("--collector-flush", type=float, default=5.0, metavar="SECONDS",
      help="release everything cached, in order, when nothing arrived for this long (the "
           "end of a stream; pvapy waits 5 s) (default: %(default)s). Example: "
           "--collector-flush 1")
    consumer_actions = {action.dest: action for action in consumer_args.build_parser()._actions}
    for dest in SHARED_FLAGS:
        p._add_action(copy.copy(consumer_actions[dest]))
    return p


def _id_list_arg(text: str) -> list:
    try:
        return parse_id_list(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def config_from_args(args) -> CollectorConfig:
    return CollectorConfig(
        args.input_channel, consumer_id=args.collector_id,
        producer_ids=args.producer_id_list, output_channel=args.output_channel,
        status_channel=args.status_channel, control_channel=args.control_channel,
        processor_file=args.processor_file, processor_class=args.processor_class,
        processor_args=args.processor_args, gpu=args.gpu, oid_field=args.oid_field,
        oid_offset=args.oid_offset, skip_initial_updates=args.skip_initial_updates,
        server_queue_size=args.server_queue_size, receiver_queue_size=args.receiver_queue_size,
        collector_cache_size=args.collector_cache_size, collector_flush=args.collector_flush,
        metadata_channels=args.metadata_channels, runtime=args.runtime,
        report_period=args.report_period, id_format_spec=args.id_format_spec,
        field_request=args.field_request, control_allow=args.control_allow)


def _collector_from_args(args) -> Collector:
    parse_report_stats(args.report_stats)   # a bad -rs fails before anything is built
    return Collector(config_from_args(args))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    consumer_cli._setup_logging(args.log_level, args.log_file)
    args.receiver_queue_size = consumer_cli.receiver_queue_size(args.receiver_queue_size)
    return consumer_cli._run_one(args, build=_collector_from_args, prog="pvagpu-collector")


if __name__ == "__main__":
    sys.exit(main())
