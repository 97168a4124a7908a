"""Publisher: cost of posting an equal structure built elsewhere.

p4p posts only Values of the record's own Type object; pvagpu's publisher
converts a Value of an equal structure (another Type object, e.g. an
NTNDArray a processor built itself) with ``Value(open type, value)`` before
posting. This measures ``updateOutputChannel`` for one 2048x2048 uint16
NTNDArray (8 MiB) in the same run:

* ``same type``: the Value has the record's Type object (the plain post);
* ``equal structure``: the same fields in a Type built separately (the
  conversion path: a refused post, a structure comparison, the conversion);
* ``todict copy``: what a conversion through ``Value(type, value.todict())``
  would cost instead (a pixel copy; shown to justify the path taken).

The record is served on loopback with no client (the publisher's own cost,
not the network's). Best of ``--repeats`` runs of ``--posts`` posts.
Writes benchmarks/results/publisher_convert.json.

    python benchmarks/publisher_convert.py
    python benchmarks/publisher_convert.py --posts 50 --repeats 3   # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402
from p4p import Type, Value  # noqa: E402

import _machine  # noqa: E402
from pvagpu import ntnda  # noqa: E402
from pvagpu.pva.loopback import loopback_env  # noqa: E402
from pvagpu.pva.publisher import LocalServer, Publisher  # noqa: E402

NX = NY = 2048


def frames():
    image = np.random.default_rng(1).integers(0, 4096, (NY, NX), dtype=np.uint16)
    same = ntnda.value_from_image(image, 1)
    other_type = Type(list(ntnda.NTNDARRAY_TYPE.aspy()[2]), id=ntnda.NTNDARRAY_TYPE.getID())
    equal = ntnda.build_value(("ushortValue", image.reshape(-1)), 1, shape=image.shape,
                              dtype=image.dtype, value_type=other_type)
    return same, equal


def best_time(fn, posts: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(posts):
            fn()
        best = min(best, (time.perf_counter() - t0) / posts)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=200, help="posts per run, e.g. --posts 50")
    parser.add_argument("--repeats", type=int, default=5, help="runs; the best counts, e.g. 3")
    parser.add_argument("--output", default=str(HERE / "results" / "publisher_convert.json"),
                        help="JSON result file, e.g. --output /tmp/pc.json")
    args = parser.parse_args(argv)
    os.environ.update(loopback_env())
    machine = _machine.describe()
    print(_machine.line(machine))
    same, equal = frames()
    server = LocalServer()
    publisher = Publisher(server, "bench:publisher:output")
    try:
        publisher.updateOutputChannel(same)
        times = {
            "same type": best_time(lambda: publisher.updateOutputChannel(same),
                                   args.posts, args.repeats),
            "equal structure": best_time(lambda: publisher.updateOutputChannel(equal),
                                         args.posts, args.repeats),
            "todict copy": best_time(lambda: Value(ntnda.NTNDARRAY_TYPE, equal.todict()),
                                     args.posts, args.repeats),
        }
        assert publisher.counters.n_errors == 0 and publisher.n_type_changes == 0
        assert publisher.n_converted == args.posts * args.repeats
    finally:
        publisher.close()
        server.stop()
    for name, seconds in times.items():
        print(f"{name:16s} {seconds * 1e6:9.1f} us per post")
    extra = times["equal structure"] - times["same type"]
    print(f"conversion adds {extra * 1e6:.1f} us per {NX}x{NY} uint16 frame "
          f"({times['equal structure'] / times['same type']:.2f}x the plain post)")
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "publisher_convert", "machine": machine, "frame": f"{NX}x{NY} uint16",
        "posts": args.posts, "repeats": args.repeats,
        "seconds_per_post": times, "conversion_extra_seconds": extra}, indent=2) + "\n")
    print(f"publisher_convert: equal structure {times['equal structure'] * 1e6:.0f} us vs same "
          f"type {times['same type'] * 1e6:.0f} us per post; results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
