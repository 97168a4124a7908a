"""GPU stage speed: pinned host-to-device bandwidth, device bslz4 and lz4
decode against the host libraries, and end-to-end frames/s of the GPU stage
(stage -> decode -> a small processFrame) against the NumPy backend.

    python benchmarks/gpu.py            # 2048 x 2048 uint16 Poisson frames
    python benchmarks/gpu.py --quick    # 1024 x 1024, fewer repeats

Prints the machine and device line and the ratios, and writes
benchmarks/results/gpu.json. Without CuPy or a CUDA device it says so and
exits 0.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402

import _machine  # noqa: E402
from pvagpu import codecs, ntnda  # noqa: E402
from pvagpu.gpu import GpuAdImageProcessor, select_backend  # noqa: E402


class _Sum(GpuAdImageProcessor):
    def processFrame(self, frame):
        return {"sum": float(frame.image.sum())}


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", type=int, default=0, help="frame side (default 2048)")
    args = parser.parse_args(argv)
    side = args.size or (1024 if args.quick else 2048)
    repeats = 3 if args.quick else 10

    backend = select_backend("auto")
    info = _machine.describe(benchmark="gpu")
    print(_machine.line(info))
    if not backend.is_gpu:
        print(f"no GPU: {backend.describe()}; nothing to measure")
        return 0
    cp = backend.xp
    print(f"device: {backend.describe()}")
    results = {"machine": info, "device": backend.describe(), "frame": [side, side, "uint16"]}

    # pinned host-to-device bandwidth
    nbytes = side * side * 2
    mem = cp.cuda.alloc_pinned_memory(nbytes)
    host = np.frombuffer(mem, np.uint8, nbytes)
    host[:] = 1
    dev = cp.empty(nbytes, cp.uint8)
    stream = cp.cuda.Stream(non_blocking=True)

    def h2d():
        cp.cuda.runtime.memcpyAsync(dev.data.ptr, host.ctypes.data, nbytes,
                                    cp.cuda.runtime.memcpyHostToDevice, stream.ptr)
        stream.synchronize()
    h2d()
    t = _best(h2d, repeats)
    results["h2d_GBps"] = nbytes / t / 1e9
    print(f"pinned host-to-device: {results['h2d_GBps']:.1f} GB/s")

    image = (np.random.default_rng(0).poisson(5, (side, side))).astype(np.uint16)
    frames = {}
    for codec in ("bslz4", "lz4", ""):
        value = ntnda.value_from_image(image, 1, codec=codec)
        frames[codec] = value
        if codec:
            payload = codecs.as_bytes(ntnda.payload(value)[0])
            host_t = _best(lambda: codecs.decode(codec, payload, image.dtype, image.nbytes),
                           repeats)
            p = _Sum({})
            p.setBackend(backend)
            path = p.pipeline
            problem = path.decoder.nvcomp_problem()
            if problem:
                print(f"{codec:6s} decode: not on the device, nvcomp cannot be used ({problem})")
                results[f"{codec}_decode_GBps"] = {"host": image.nbytes / host_t / 1e9}
                continue
            staged = path.ring.stage(payload, image.nbytes)

            def device_decode():
                out = path.decoder.decode(codec, staged, image.dtype, image.nbytes)
                staged.stream.synchronize()
                return out
            got = device_decode()
            assert np.array_equal(cp.asnumpy(got), image.reshape(-1)), codec
            dev_t = _best(device_decode, repeats)
            results[f"{codec}_decode_GBps"] = {"device": image.nbytes / dev_t / 1e9,
                                               "host": image.nbytes / host_t / 1e9}
            print(f"{codec:6s} decode: device {image.nbytes / dev_t / 1e9:7.2f} GB/s, host "
                  f"{image.nbytes / host_t / 1e9:6.2f} GB/s, ratio {host_t / dev_t:5.1f}x")

    n_frames = 20 if args.quick else 100
    for codec, value in frames.items():
        rates = {}
        for name, be in (("gpu", backend), ("numpy", select_backend("none"))):
            p = _Sum({})
            p.setBackend(be)
            p.process(value)
            t = time.perf_counter()
            for _ in range(n_frames):
                p.process(value)
            p.flush(wait=True)
            rates[name] = n_frames / (time.perf_counter() - t)
        results[f"e2e_{codec or 'none'}_fps"] = rates
        print(f"end to end ({codec or 'uncompressed'}): GPU {rates['gpu']:.0f} frames/s, "
              f"NumPy {rates['numpy']:.0f} frames/s, ratio {rates['gpu'] / rates['numpy']:.1f}x")

    out = HERE / "results" / "gpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"gpu benchmark done: {side}x{side} uint16, results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
