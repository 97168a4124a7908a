"""pvagpu-consumer: run a processor on an area-detector (NTNDArray) PVA stream.

The flags (:mod:`pvagpu.cli.consumer_args`) are pvapy-hpc-consumer's where
the concept is the same, so a pvapy command line works after renaming the
command. Processor arguments
are JSON and consumer id lists (-cid) are read by a strict parser: neither
is ever evaluated as Python.

Exit status: 0 after a clean stop (runtime reached, control-channel stop,
SIGINT or SIGTERM); 2 for a bad command line or configuration (bad JSON,
a processor file or class that cannot be loaded, ...); 1 for a failure at
run time.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys

from ..consumer import Consumer
from ..errors import ConfigurationError
from ..memory import tune_malloc
from ..report import Reporter, parse_report_stats, summary_line
from ..runtime.config import ConsumerConfig, distributor_oid_offset
from ..runtime.delivery import DEFAULT_FRAME_QUEUE_SIZE
from ..runtime.loading import load_processor_class, parse_processor_args
from .consumer_args import AUTO_REPORT_PERIOD, build_parser
from ..runtime.naming import format_id

#: -rp's default on a terminal: the live table, redrawn every second
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
        field_request=args.field_request, control_allow=args.control_allow,
        input_mode=args.input_mode, input_args=args.input_args, output_mode=args.output_mode,
        output_args=args.output_args,
        n_workers=args.n_workers, gpus=args.gpus)


def _consumer_from_args(args):
    """The Consumer of one command line (ConfigurationError if bad)."""
    parse_report_stats(args.report_stats)   # a bad -rs fails before anything is built
    return Consumer(config_from_args(args))


def _reporter_for(args):
    """The live report (-rp > 0; without -rp the live table if it can be
    drawn), else None; sets args.report_period to the period used."""
    # the live table would fight with log lines written to the terminal
    logging_to_terminal = bool(args.log_level and not args.log_file)
    disable = args.disable_curses or logging_to_terminal
    if args.report_period is None:     # the default: a live table, or nothing
        reporter = Reporter(args.report_stats, disable_curses=disable)
        args.report_period = AUTO_REPORT_PERIOD if reporter.live else 0.0
        return reporter if reporter.live else None
    if args.report_period <= 0:
        return None
    return Reporter(args.report_stats, disable_curses=disable)


def _start_notes(consumer, note) -> None:
    """Say at start what the defaults chose: who may command the control
    channel, and (once known) the monitor queue size."""
    housekeeping = getattr(consumer, "housekeeping", None)
    if getattr(consumer, "control_channel_name", None) and housekeeping is not None:
        note(f"control channel {consumer.control_channel_name}: commands accepted from "
             f"{housekeeping.access.describe()} (--control-allow)")
    if getattr(consumer, "receiver", None) is not None:
        consumer.receiver.on_note = note


def _distributor(args) -> dict | None:
    """The distributor options given on the command line (None if none)."""
    options = {"group": args.distributor_group, "set": args.distributor_set,
               "trigger": args.distributor_trigger, "updates": args.distributor_updates}
    return options if any(v is not None for v in options.values()) else None


def _run_one(args, build=_consumer_from_args, prog="pvagpu-consumer") -> int:
    """Run the Consumer that ``build(args)`` makes (pvagpu-collector's too)
    with the live report and signal handling; the exit status."""
    tune_malloc()
    reporter = None
    try:
        parse_report_stats(args.report_stats)   # a bad -rs is refused before the screen is used
        reporter = _reporter_for(args)          # sets the report period that build() reads
        consumer = build(args)
    except ConfigurationError as exc:
        if reporter is not None:
            reporter.close()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if reporter is not None:
        consumer.on_stats.append(reporter.update)
    _start_notes(consumer, reporter.note if reporter is not None else
                 lambda text: print(text, flush=True))

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
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        logging.getLogger("pvagpu.consumer").exception("%s failed", prog)
        consumer.shutdown()
        print(f"{prog}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
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
        if not action.option_strings or action.dest in ("help", "version", "n_consumers",
                                                        "consumer_id",
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


def receiver_queue_size(size: int | None) -> int:
    """-rqs as given (None: not given, processing on the PVA thread); pvapy's
    0, an unbounded queue, becomes a queue of DEFAULT_FRAME_QUEUE_SIZE with a
    warning (memory stays bounded)."""
    if size is None:
        return -1
    if size == 0:
        logging.getLogger("pvagpu.cli").warning(
            "-rqs 0: pvapy's receiver queue without a bound; pvagpu keeps one: a queue of %d "
            "frames, frames arriving when it is full are dropped and counted as overruns "
            "(give -rqs N for another size, -rqs -1 to process on the PVA thread)",
            DEFAULT_FRAME_QUEUE_SIZE)
        return DEFAULT_FRAME_QUEUE_SIZE
    return size


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
    args.receiver_queue_size = receiver_queue_size(args.receiver_queue_size)
    # the id step of each consumer; children get it as -oo
    args.oid_offset = distributor_oid_offset(
        args.oid_offset, n_consumers=args.n_consumers,
        distributor_updates=args.distributor_updates, n_distributor_sets=args.n_distributor_sets)
    if len(consumer_ids) > 1:
        return _run_many(parser, args, consumer_ids)
    return _run_one(args)


if __name__ == "__main__":
    sys.exit(main())
