"""Frames per second of the analytics processors on the CPU, next to the
same computation written plainly in NumPy, and the AzimuthalIntegrator
next to pyFAI's integrate1d (no splitting, CSR, cython) -- its 2-D cake
(360 x 1000 bins) next to pyFAI's integrate2d -- in one run.

Each processor's per-frame work (its step, bound to the NumPy backend:
what ``processFrame`` runs) and its baseline run alternately on one
2048 x 2048 uint16 frame (Poisson counts, lam 5, with 300 bright spots),
best of several rounds. The PeakFinder's baseline is the usual
scipy.ndimage.maximum_filter finder. Goals: each processor at least as
fast as plain NumPy, the PeakFinder >= 2x the maximum_filter finder, the
AzimuthalIntegrator (profile and cake) >= pyFAI's cython CSR. Writes
benchmarks/results/analytics.json (with --only: updates the rows run,
keeps the others).

    python benchmarks/analytics.py
    python benchmarks/analytics.py --quick      # fewer repeats
    python benchmarks/analytics.py --only "AzimuthalIntegrator cake"   # one processor
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy import ndimage  # noqa: E402

import _machine  # noqa: E402
from pvagpu.analytics import accumulation, azimuthal, binning, corrections, peaks, roi, \
    rotation, statistics  # noqa: E402

N = 2048


def frame(rng):
    image = rng.poisson(5, (N, N)).astype(np.uint16)
    ys, xs = rng.integers(3, N - 3, 300), rng.integers(3, N - 3, 300)
    image[ys, xs] += rng.integers(100, 5000, 300).astype(np.uint16)
    return image


def best_fps(fn, arg, budget_s, rounds):
    """Best frames/s over ``rounds`` rounds of ~budget_s each."""
    fn(arg)
    best = 0.0
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            fn(arg)
            n += 1
            dt = time.perf_counter() - t0
            if dt >= budget_s and n >= 3:
                break
        best = max(best, n / dt)
    return best


def cases(tmp, rng):
    """(name, make) with ``make()`` giving (step, [(baseline name, baseline
    function), ...]), built only for the processors that run."""
    dark = rng.normal(2, 0.5, (N, N)).astype(np.float32)
    flat = rng.normal(1, 0.02, (N, N)).astype(np.float32)
    mask = (rng.random((N, N)) < 0.01).astype(np.uint8)
    for name, a in (("dark", dark), ("flat", flat), ("mask", mask)):
        np.save(tmp / f"{name}.npy", a)
    files = {k: str(tmp / f"{k}.npy") for k in ("dark", "flat", "mask")}
    bad = mask != 0
    flat_n = flat / flat[~bad].mean()
    x, y = np.arange(N, dtype=np.float64), np.arange(N, dtype=np.float64)

    def np_stats(img):
        f = img.astype(np.float64)
        s = f.sum()
        return (s, f.min(), f.max(), f.mean(), f.std(), np.count_nonzero(img > 10),
                f.sum(axis=0) @ x / s, f.sum(axis=1) @ y / s)

    def np_corrections(img):
        return np.where(bad, np.float32(0), (img.astype(np.float32) - dark) / flat_n)

    acc = np.zeros((N, N), np.int64)

    def np_accumulate(img):
        np.add(acc, img, out=acc)

    def maximum_filter_finder(img):
        peaks_ = (img == ndimage.maximum_filter(img, size=7, mode="constant")) & (img > 50)
        return np.nonzero(peaks_)

    (tmp / "g.poni").write_text(
        "poni_version: 2.1\nDetector: Detector\nDetector_config: {\"pixel1\": 7.5e-05, "
        "\"pixel2\": 7.5e-05, \"max_shape\": [2048, 2048], \"orientation\": 3}\n"
        "Distance: 0.2\nPoni1: 0.0768\nPoni2: 0.0768\nRot1: 0.01\nRot2: -0.02\nRot3: 0.0\n"
        "Wavelength: 1e-10\n")
    poni = str(tmp / "g.poni")
    kw = {k: np.load(v) for k, v in files.items()}
    method = ("no", "csr", "cython")

    def profile():
        step = azimuthal.AzimuthalStep({"poni": poni, "npt": 1000, **files})
        ai = pyfai_integrator(poni)
        return step, [("NumPy bincount", np_bincount(step.table((N, N)))),
                      ("pyFAI integrate1d csr cython", lambda img: ai.integrate1d(
                          img, 1000, unit="q_nm^-1", method=method, **kw))]

    def cake():
        step = azimuthal.AzimuthalStep({"poni": poni, "npt": 1000, "nAzimuthal": 360, **files})
        ai = pyfai_integrator(poni)
        return step, [("NumPy bincount", np_bincount(step.table((N, N)))),
                      ("pyFAI integrate2d csr cython", lambda img: ai.integrate2d(
                          img, 1000, 360, unit="q_nm^-1", method=method, **kw))]

    return [
        ("FrameStatistics", lambda: (statistics.FrameStatisticsStep({"threshold": 10}),
                                     [("NumPy", np_stats)])),
        ("Corrections", lambda: (corrections.CorrectionsStep(files),
                                 [("NumPy", np_corrections)])),
        ("Binning 2x2 sum", lambda: (binning.BinningStep({}), [(
            "NumPy reshape-sum",
            lambda img: img.reshape(N // 2, 2, N // 2, 2).sum(axis=(1, 3), dtype=np.uint32))])),
        ("Roi 1024x1024", lambda: (
            roi.RoiStep({"x": 512, "y": 512, "width": 1024, "height": 1024}),
            [("NumPy slice copy", lambda img: img[512:1536, 512:1536].copy())])),
        ("Rotation 90", lambda: (rotation.RotationStep({"rotate": 90}), [
            ("NumPy rot90 copy", lambda img: np.ascontiguousarray(np.rot90(img)))])),
        ("Accumulation", lambda: (accumulation.AccumulationStep({"nFrames": 1000000}),
                                  [("NumPy +=", np_accumulate)])),
        ("PeakFinder", lambda: (peaks.PeakFinderStep({"threshold": 50, "minDistance": 3}),
                                [("maximum_filter finder", maximum_filter_finder)])),
        ("AzimuthalIntegrator", profile),
        ("AzimuthalIntegrator cake 360x1000", cake),
    ]


def np_bincount(table):
    """The integration of ``table``'s bins written plainly in NumPy."""
    csr = table.matrix
    n = csr.shape[0]
    bins_of = np.repeat(np.arange(n), np.diff(csr.indptr))
    pixels_of = csr.indices
    filled = table.count > 0
    norm = np.where(filled, table.norm_sum, 1)

    def integrate(img):
        signal = np.bincount(bins_of, weights=img.reshape(-1)[pixels_of], minlength=n)
        return np.where(filled, (signal - table.dark_sum) / norm, 0)
    return integrate


def pyfai_integrator(poni):
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator as PyFAI
    ai = PyFAI(detector=Detector(7.5e-5, 7.5e-5, max_shape=(N, N)))
    ai.load(poni)
    return ai


def merge(path, machine, goals, rows, names):
    """The results file's content with the rows of ``names`` replaced by
    ``rows`` (a row measured on another machine than the file's keeps its
    own ``machine``)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"benchmark": "analytics", "machine": machine, "goals": goals, "results": rows}
    if old.get("machine") != machine:
        rows = [dict(r, machine=machine) for r in rows]
    kept = [r for r in old.get("results", []) if r["processor"] not in names]
    old_goals = {k: v for k, v in old.get("goals", {}).items()
                 if k.split(" vs ")[0] not in names}
    return {**old, "goals": {**old_goals, **goals}, "results": kept + rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--output", default=str(HERE / "results" / "analytics.json"),
                        help="JSON results file (default: %(default)s)")
    parser.add_argument("--only", action="append", metavar="PROCESSOR",
                        help="run only this processor (repeatable), e.g. --only PeakFinder "
                             "--only 'AzimuthalIntegrator cake 360x1000'; the results file "
                             "keeps the other rows")
    args = parser.parse_args()
    budget, rounds = (0.3, 2) if args.quick else (1.0, 3)
    import pyFAI
    machine = _machine.describe(numpy=np.__version__, scipy=scipy.__version__,
                                pyFAI=pyFAI.version, frame=f"{N}x{N} uint16")
    print(_machine.line(machine))
    rng = np.random.default_rng(1)
    image = frame(rng)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        steps = cases(tmp, rng)
        known = [name for name, _ in steps]
        unknown = sorted(set(args.only or ()) - set(known))
        if unknown:
            parser.error(f"--only {unknown}: the processors are {known}")
        print(f"{'processor':34s} {'pvagpu f/s':>11s} {'baseline f/s':>13s} {'ratio':>6s}  "
              f"baseline")
        for name, make in steps:
            if args.only and name not in args.only:
                continue
            step, baselines = make()
            step.bind(np)
            ours = best_fps(step.apply, image, budget, rounds)
            for base_name, base in baselines:
                theirs = best_fps(base, image, budget, rounds)
                rows.append({"processor": name, "pvagpu_fps": ours, "baseline": base_name,
                             "baseline_fps": theirs, "ratio": ours / theirs})
                print(f"{name:34s} {ours:11.1f} {theirs:13.1f} {ours / theirs:6.2f}  "
                      f"{base_name}")
    goals = {r["processor"] + " vs " + r["baseline"]: r["ratio"] >= (
        2.0 if r["processor"] == "PeakFinder" else 1.0) for r in rows}
    met = sum(goals.values())
    print(f"summary: {met}/{len(goals)} goals met (each >= baseline; PeakFinder >= 2x) on "
          f"{N}x{N} uint16; {_machine.line(machine)}")
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "analytics", "machine": machine, "goals": goals, "results": rows}
    if args.only:
        result = merge(out, machine, goals, rows, set(args.only))
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
