"""pvagpu-sim-server: a simulated area detector on PV Access.

Serves NTNDArray frames on one channel, with the flags of
pvapy-ad-sim-server, plus areaDetector compression (--codec) applied while
the frame cache is built, a steady-clock rate that does not drift, and a
one-line summary of the rate really reached.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from .. import __version__

PROG = "pvagpu-sim-server"

EPILOG = """\
frames, rate and runtime:
  Distinct frames are made once, before the first frame goes out, and
  republished in a cycle with uniqueId 1, 2, 3, ... and the publication time
  in timeStamp and dataTimeStamp. Without -nf: every frame of an input file
  (at most -cs), or as many random frames as the cache size -cs (1000) allows
  within --build-budget seconds (5) and --memory-budget MiB (1024), timed on
  the first frames; the count chosen is printed when a budget limits it, and
  a build longer than a second shows its progress on stderr. Frame k is due at
  start + k/fps on a steady clock; a late frame goes out at once, none is
  skipped. -fps 0 publishes as fast as possible. The run ends after -rt
  seconds or -np frames, on SIGINT or SIGTERM; then the channel stays up for
  the shutdown delay -shd so that clients can drain their queues, and one
  summary line is printed.

metadata PVs (-mpv):
  pva://NAME is a PV Access channel of this server that carries the frame's
  time stamp; NAME or ca://NAME is a Channel Access PV (an ao record) of an
  IOC embedded in this process (the softioc package: pip install
  'pvagpu[ioc]'), put just before each frame, as pvapy does. The IOC obeys
  EPICS_CAS_SERVER_PORT, EPICS_CAS_INTF_ADDR_LIST and the other EPICS_CA*
  settings.

HDF5 input (-if FILE.h5 -hds DATASET):
  frames are read through HDF5's filters (bitshuffle, LZ4, blosc, deflate,
  ...) and sent as pixels (or recompressed with --codec). With -hcm each
  frame's chunk goes out as stored, header included, under pvapy's codec
  names: bitshuffle/LZ4 -> bslz4, LZ4 -> lz4 (HDF5 framing), blosc -> blosc,
  and deflate -> zlib; it needs one frame per chunk. pvagpu-consumer decodes
  all of them; pvapy's consumer needs PVAPY_COMPRESSED_PAYLOAD_START.

differences from pvapy-ad-sim-server:
  -std defaults to 1 s (pvapy: 10 s) and -shd to 1 s (pvapy: 10 s); floats
  default to [0, 1) (pvapy: the float32 range); -rp defaults to one report a
  second (pvapy: every frame); -nf defaults to what the budgets allow (pvapy:
  1000 at any size); -dc is accepted (no curses screen is ever used); -id,
  -cfg and -npv are not supported.

examples:
  # 512x512 uint16 Poisson frames, bslz4-compressed, 100 fps for 60 s
  pvagpu-sim-server -cn det:image -nx 512 -ny 512 -dt uint16 \\
      --distribution poisson --mean 4 -cdc bslz4 -fps 100 -rt 60

  # top rate: 1024x1024 uint8, as fast as possible, 20000 frames, report every 1000
  pvagpu-sim-server -nx 1024 -ny 1024 -nf 100 -fps 0 -np 20000 -rp 1000

  # replay an .npy stack at 10 fps once a client is there, with a metadata channel
  pvagpu-sim-server -if frames.npy -mm -fps 10 -wfc -std 0.5 -mpv pva://det:x

  # stream an HDF5 file's bitshuffle/LZ4 chunks as stored, with two CA metadata PVs
  pvagpu-sim-server -if scan.h5 -hds /entry/data/data -hcm -fps 50 -mpv det:x,det:y

  # 2048x2048 Poisson frames: as many distinct frames as 10 s of building makes
  pvagpu-sim-server -nx 2048 -ny 2048 -dt uint16 --distribution poisson -cdc bslz4 \\
      --build-budget 10
"""

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _codec_names() -> str:
    try:
        from .. import codecs
        return ", ".join(["none"] + codecs.names())
    except ImportError as exc:  # a missing optional codec dependency
        return f"none, ... (codec registry unavailable: {exc})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("-v", "--version", action="version", version=f"%(prog)s {__version__}")
    src = parser.add_argument_group("frames")
    src.add_argument("-if", "--input-file", default=None,
                     help=".npy file with a (n, ny, nx) or (n, ny, nx, 3) stack, or one frame, "
                          "or an HDF5 file (with -hds); without it random frames are made, "
                          "e.g. -if frames.npy")
    src.add_argument("-hds", "--hdf-dataset", default=None,
                     help="the frame dataset of an HDF5 input file, "
                          "e.g. -if scan.h5 -hds /entry/data/data")
    src.add_argument("-hcm", "--hdf-compression-mode", action="store_true",
                     help="send each HDF5 chunk as stored (bslz4, lz4, blosc or zlib) instead "
                          "of decompressing it, e.g. -if scan.h5 -hds /entry/data/data -hcm")
    src.add_argument("-mm", "--mmap-mode", action="store_true",
                     help="memory-map the input file instead of reading it whole")
    src.add_argument("-nx", "--n-x-pixels", type=int, default=256, dest="nx",
                     help="random frame width (default 256)")
    src.add_argument("-ny", "--n-y-pixels", type=int, default=256, dest="ny",
                     help="random frame height (default 256)")
    src.add_argument("-dt", "--datatype", default="uint8",
                     help="random frame type: int8, uint8, int16, uint16, int32, uint32, int64, "
                          "uint64, float32, float64 (default uint8)")
    src.add_argument("-cm", "--color-mode", type=int, default=0,
                     help="0 Mono, 2 RGB1 [3,NX,NY], 3 RGB2 [NX,3,NY], 4 RGB3 [NX,NY,3] "
                          "(default 0; for an (n, ny, nx, 3) input file: RGB1 unless given)")
    src.add_argument("-mn", "--minimum", type=float, default=None,
                     help="lowest random value (default: the type's minimum; floats 0)")
    src.add_argument("-mx", "--maximum", type=float, default=None,
                     help="random values stay below this (default: the type's maximum + 1; "
                          "floats 1)")
    src.add_argument("-dist", "--distribution", default="uniform",
                     choices=["uniform", "poisson"],
                     help="uniform over [min, max) (default) or Poisson counts clipped to it")
    src.add_argument("--mean", type=float, default=4.0,
                     help="mean of the Poisson distribution (default 4)")
    src.add_argument("--seed", type=int, default=None, help="random seed (default: fresh)")
    src.add_argument("-nf", "--n-frames", type=int, default=0,
                     help="distinct frames (default: every frame of the input file; random "
                          "frames: what -cs and the budgets allow), e.g. -nf 50")
    src.add_argument("-cs", "--cache-size", type=int, default=1000,
                     help="most distinct frames held, all built before publishing "
                          "(default 1000), e.g. -cs 200")
    src.add_argument("--memory-budget", type=float, default=1024.0, metavar="MIB",
                     help="MiB that default random frames may hold (default 1024), "
                          "e.g. --memory-budget 4096")
    src.add_argument("--build-budget", type=float, default=5.0, metavar="SECONDS",
                     help="seconds that building default random frames may take (default 5), "
                          "e.g. --build-budget 30")
    src.add_argument("-cdc", "--codec", default="none",
                     help=f"areaDetector codec applied while the cache is built, as "
                          f"NDPluginCodec would: {_codec_names()} (default none)")
    src.add_argument("-cdo", "--codec-options", default=None, metavar="JSON",
                     help="codec options as a JSON object, e.g. '{\"level\": 5}'")
    run = parser.add_argument_group("publishing")
    run.add_argument("-cn", "--channel-name", default="pvapy:image",
                     help="NTNDArray channel (default pvapy:image)")
    run.add_argument("-fps", "--frame-rate", type=float, default=20.0,
                     help="frames per second; <= 0: as fast as possible (default 20)")
    run.add_argument("-rt", "--runtime", type=float, default=300.0,
                     help="seconds of publishing; <= 0: no limit (default 300)")
    run.add_argument("-np", "--n-published", type=int, default=0,
                     help="stop after this many frames; <= 0: no limit (default)")
    run.add_argument("-std", "--start-delay", type=float, default=1.0,
                     help="seconds between serving the channel and the first frame (default 1)")
    run.add_argument("-wfc", "--wait-for-client", action="store_true",
                     help="start the start delay when the first client connects")
    run.add_argument("-shd", "--shutdown-delay", type=float, default=1.0,
                     help="seconds the channel stays up after the last frame (default 1)")
    run.add_argument("-mpv", "--metadata-pv", default=None,
                     help="comma list of metadata PVs, each given a random value in [0, 1) "
                          "with every frame: pva://NAME over PV Access (the frame's time "
                          "stamp), NAME or ca://NAME over Channel Access (embedded IOC), "
                          "e.g. -mpv pva://det:x,det:y")
    run.add_argument("-rp", "--report-period", type=int, default=None,
                     help="report every N frames; <= 0: never (default: about once a second)")
    run.add_argument("--no-malloc-tuning", action="store_true",
                     help="leave glibc's malloc thresholds alone (by default they are raised "
                          "so that sending large frames does not page-fault; see "
                          "pvagpu.memory)")
    run.add_argument("-dc", "--disable-curses", action="store_true",
                     help="accepted for pvapy compatibility (no curses screen is used)")
    return parser


def config_from_args(args):
    """SimConfig for parsed arguments; ConfigurationError for unusable ones."""
    from ..errors import ConfigurationError
    from ..pva.sim_config import SimConfig

    options = {}
    if args.codec_options:
        try:
            options = json.loads(args.codec_options)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"--codec-options is not JSON: {exc}") from None
        if not isinstance(options, dict):
            raise ConfigurationError("--codec-options must be a JSON object")
    metadata = [name for name in (args.metadata_pv or "").split(",") if name.strip()]
    return SimConfig(
        channel_name=args.channel_name, nx=args.nx, ny=args.ny, datatype=args.datatype,
        color_mode=args.color_mode, frame_rate=args.frame_rate, n_frames=args.n_frames,
        cache_size=args.cache_size, runtime=args.runtime, n_published=args.n_published,
        minimum=args.minimum, maximum=args.maximum, distribution=args.distribution,
        mean=args.mean, seed=args.seed, input_file=args.input_file, mmap_mode=args.mmap_mode,
        hdf_dataset=args.hdf_dataset, hdf_compressed=args.hdf_compression_mode,
        memory_budget=int(args.memory_budget * 1024 * 1024), build_budget=args.build_budget,
        codec=args.codec, codec_options=options, metadata_pvs=metadata,
        start_delay=args.start_delay, wait_for_client=args.wait_for_client,
        report_period=args.report_period, tune_malloc=not args.no_malloc_tuning)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from ..errors import PvagpuError
    from ..pva.sim_server import SimServer

    def say(text):
        print(text, flush=True)

    def progress(text):
        print(text, file=sys.stderr, flush=True)

    try:
        server = SimServer(config_from_args(args), report=say, progress=progress)
    except (PvagpuError, ValueError) as exc:  # e.g. a codec option value out of range
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    interrupted = threading.Event()

    def on_signal(signum, frame):
        interrupted.set()
        server.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed = None
    try:
        server.start()
        while not server.wait(0.2):
            pass
        if not interrupted.is_set() and args.shutdown_delay > 0:
            interrupted.wait(args.shutdown_delay)
    except Exception as exc:  # noqa: BLE001 - reported with the summary
        failed = exc
    finally:
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001
            failed = failed or exc
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interrupted.is_set() and server.stop_reason == "stopped":
        server.stop_reason = "interrupted"
    say(server.summary())
    if failed is not None:
        print(f"{PROG}: error: {failed}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
