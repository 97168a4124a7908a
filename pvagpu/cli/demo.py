"""pvagpu demo: detector-like frames through every codec and the file writer.

Generates Poisson frames (as a photon-counting detector would give), encodes
each with every areaDetector codec into an NTNDArray exactly as NDPluginCodec
publishes it, decodes it again through ``AdImageProcessor.reshapeNtNdArray``,
checks the pixels, writes the frames as TIFF files through
``AdOutputFileProcessor`` and prints a summary.

    python -m pvagpu.cli.demo [--frames N] [--nx NX] [--ny NY] [--output-directory DIR]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import tifffile

from .. import codecs, ntnda
from ..hpc import AdImageProcessor, AdOutputFileProcessor

#: lossy codecs and the least peak signal-to-noise ratio (dB) they must keep
LOSSY = {"jpeg": 30.0}


def psnr(decoded: np.ndarray, image: np.ndarray) -> float:
    """Peak signal-to-noise ratio of ``decoded`` against 8-bit ``image``, dB."""
    mse = np.mean((decoded.astype(np.float64) - image) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="pvagpu-demo", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", "-nf", type=int, default=20,
                        help="frames per codec (default 20)")
    parser.add_argument("--nx", type=int, default=1024, help="frame width (default 1024)")
    parser.add_argument("--ny", type=int, default=1024, help="frame height (default 1024)")
    parser.add_argument("--output-directory", "-od", default="demo-output",
                        help="where the TIFF files go (default ./demo-output)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    rng = np.random.default_rng(2026)
    frames16 = rng.poisson(4.0, (args.frames, args.ny, args.nx)).astype(np.uint16)
    writer = AdOutputFileProcessor({"outputDirectory": args.output_directory,
                                    "outputFileNameFormat": "{uniqueId:06}.{processorId}.tiff",
                                    "processorId": 1})
    print(f"pvagpu demo: {args.frames} Poisson frames of {args.ny}x{args.nx} "
          f"through {len(codecs.names())} codecs, TIFFs to {args.output_directory}/")
    print(f"{'codec':>8} {'dtype':>6} {'ratio':>6} {'encode MB/s':>12} {'decode MB/s':>12} {'result':>8}")
    failures, unique_id = 0, 0
    for name in codecs.names():  # first use loads compiled helpers: not timed
        warm = frames16[0, :64, :64].astype(np.uint8 if name in LOSSY else np.uint16)
        AdImageProcessor.reshapeNtNdArray(ntnda.value_from_image(warm, codec=name))
    for name in codecs.names():
        frames = frames16.astype(np.uint8) if name in LOSSY else frames16
        t_enc = t_dec = 0.0
        raw = packed = 0
        ok = True
        for image in frames:
            unique_id += 1
            t0 = time.perf_counter()
            value = ntnda.value_from_image(image, unique_id, codec=name)
            t1 = time.perf_counter()
            got_id, decoded, *_ = AdImageProcessor.reshapeNtNdArray(value)
            t2 = time.perf_counter()
            t_enc += t1 - t0
            t_dec += t2 - t1
            raw += image.nbytes
            packed += value["compressedSize"]
            same = (psnr(decoded, image) >= LOSSY[name] if name in LOSSY
                    else np.array_equal(decoded, image))
            ok = ok and same and got_id == unique_id
            writer.process(value)
        failures += not ok
        print(f"{name:>8} {frames.dtype.name:>6} {raw / packed:6.2f} {raw / t_enc / 1e6:12.0f} "
              f"{raw / t_dec / 1e6:12.0f} {'ok' if ok else 'MISMATCH':>8}")
    stats = writer.getStats()
    last = f"{args.output_directory}/{unique_id:06}.1.tiff"
    readable = tifffile.imread(last).shape == frames16.shape[1:]
    print(f"summary: {unique_id} frames, {len(codecs.names()) - failures}/{len(codecs.names())} "
          f"codecs bit-exact (jpeg: PSNR >= 30 dB), {stats['nFilesSaved']} TIFF files "
          f"({stats['nBytesSaved'] / 1e6:.1f} MB, {stats['dataStorageRateMBps']:.0f} MB/s), "
          f"{'last file reads back' if readable else 'LAST FILE UNREADABLE'}")
    return 0 if failures == 0 and readable else 1


if __name__ == "__main__":
    sys.exit(main())
