"""pvagpu demo: a simulated detector and a consumer on a private loopback network.

Starts ``pvagpu-sim-server`` publishing Poisson frames (as a photon-counting
detector gives them), compressed with areaDetector's bslz4 codec, and
``pvagpu-consumer`` running pvagpu's built-in FrameCounter processor
(:mod:`pvagpu.processors`: decodes every frame, counts frames and pixel
bytes) on them. The consumer shows live statistics and ends with a one-line
summary; the demo then checks that no frame was missed. Everything it runs
is installed with the package (it reads nothing from the repository).

    python -m pvagpu.cli.demo [--seconds S] [--fps F] [--nx NX] [--ny NY] [--codec C]

Everything stays on 127.0.0.1 on free ports; both processes are stopped at
the end, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import threading

from ..pva.loopback import process_env

CHANNEL = "pvagpu:demo:image"
PROCESSOR = "pvagpu.processors:FrameCounter"
SUMMARY = re.compile(r"received (\d+), processed (\d+), missed (\d+)")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="pvagpu-demo", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="how long frames flow (default 10)")
    parser.add_argument("--fps", type=float, default=100.0, help="frame rate (default 100)")
    parser.add_argument("--nx", type=int, default=1024, help="frame width (default 1024)")
    parser.add_argument("--ny", type=int, default=1024, help="frame height (default 1024)")
    parser.add_argument("--codec", default="bslz4",
                        help="areaDetector codec of the frames (default bslz4)")
    return parser.parse_args(argv)


def _python(module: str, *args) -> list:
    return [sys.executable, "-m", module, *map(str, args)]


def _stop_after(server, consumer) -> None:
    """Stop the consumer (as Ctrl-C would) once the server has sent its frames."""
    server.wait()
    if consumer.poll() is None:
        consumer.send_signal(signal.SIGINT)


def main(argv=None) -> int:
    args = parse_args(argv)
    env = process_env()
    n_frames = int(args.seconds * args.fps)
    print(f"pvagpu demo: {n_frames} frames of {args.ny}x{args.nx} uint16, codec {args.codec}, "
          f"{args.fps:g} fps, on 127.0.0.1:{env['EPICS_PVA_SERVER_PORT']}", flush=True)
    server = subprocess.Popen(_python(
        "pvagpu.cli.sim_server", "-cn", CHANNEL, "-nx", args.nx, "-ny", args.ny, "-dt", "uint16",
        "--distribution", "poisson", "--mean", 4, "-nf", 50, "-cdc", args.codec,
        "-fps", args.fps, "-np", n_frames, "-wfc", "-std", 1, "-shd", 2, "-rp", 0,
        "-rt", args.seconds * 3 + 30), env=env)
    consumer = None
    try:
        consumer = subprocess.Popen(_python(
            "pvagpu.cli.consumer", "-ic", CHANNEL, "-pc", PROCESSOR,
            "-pa", json.dumps({"publish": False}), "-sc", "_", "-cc", "_", "-rp", 1,
            "-sqs", 100), env=env, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=_stop_after, args=(server, consumer), daemon=True).start()
        summary = None
        for line in consumer.stdout:  # show the consumer's live statistics as they come
            sys.stdout.write(line)
            sys.stdout.flush()
            summary = SUMMARY.search(line) or summary
        consumer.wait()
    finally:
        for proc in (consumer, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for proc in (consumer, server):
            if proc is not None:
                proc.wait()
    if consumer.returncode != 0 or summary is None:
        print(f"demo: the consumer failed (exit status {consumer.returncode})")
        return 1
    received, processed, missed = map(int, summary.groups())
    ok = missed == 0 and processed == n_frames
    print(f"demo: {'OK' if ok else 'FAILED'}: {processed} of {n_frames} frames processed, "
          f"{missed} missed ({received} updates received, the first being the value the "
          f"server holds when the consumer connects)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
