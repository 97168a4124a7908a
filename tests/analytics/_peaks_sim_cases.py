"""Run by test_peaks.py in a subprocess with NUMBA_ENABLE_CUDASIM=1 set
before numba is imported: the peak kernel under the CUDA simulator against
the numba CPU scan, on small images (one Python thread per CUDA thread)."""
import os
import sys

assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run with NUMBA_ENABLE_CUDASIM=1"

import numpy as np  # noqa: E402

from pvagpu.kernels import peaks  # noqa: E402


def main():
    rng = np.random.default_rng(3)
    cases = [(np.uint16, (13, 21), 1, 6.0), (np.float32, (17, 19), 2, 5.5),
             (np.int32, (9, 33), 3, 4.0), (np.uint8, (16, 16), 1, 0.0)]
    for dtype, shape, d, threshold in cases:
        image = rng.poisson(5, shape).astype(dtype)
        image[2, 3] = image[2, 4] = 40            # a plateau: only (2, 3) is a peak
        mask = np.zeros(shape, np.uint8)
        peaks.launch_peak_mask(image, d, threshold, mask)
        expect = peaks.peak_mask_cpu(image, d, threshold)
        if not np.array_equal(mask, expect) or not mask[2, 3] or mask[2, 4]:
            print(f"MISMATCH {np.dtype(dtype).name} {shape} d={d}: "
                  f"{np.argwhere(mask != expect)[:5].tolist()}")
            sys.exit(1)
        print(f"ok {np.dtype(dtype).name} {shape} d={d}: {int(mask.sum())} peaks")
    print("ALL OK")


if __name__ == "__main__":
    main()
