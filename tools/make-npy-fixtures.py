#!/usr/bin/python3
"""make-npy-fixtures.py: writes the tiny numpy-made .npy files that
tests/test_npy.c reads (tests/fixtures/npy/), so that our reader is checked
against numpy's own writer without needing numpy in CI.

    /usr/bin/python3 tools/make-npy-fixtures.py [OUT_DIR]   (python3-numpy)

Values are simple formulas the test recomputes: element i (C order) of every
array is  i * 0.5 - 1  (floats) or  i * 3 - 7  (signed ints) or  i * 7 % 256
(uint8).
"""
import os
import sys

import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "npy")
os.makedirs(out, exist_ok=True)


def floats(shape, dtype):
    return (np.arange(np.prod(shape)) * 0.5 - 1).astype(dtype).reshape(shape)


def ints(shape, dtype):
    return (np.arange(np.prod(shape)) * 3 - 7).astype(dtype).reshape(shape)


np.save(os.path.join(out, "f4_3x4.npy"), floats((3, 4), "<f4"))
np.save(os.path.join(out, "f8_2x3.npy"), floats((2, 3), "<f8"))
np.save(os.path.join(out, "i4_5.npy"), ints((5,), "<i4"))
np.save(os.path.join(out, "i8_2x2x2.npy"), ints((2, 2, 2), "<i8"))
np.save(os.path.join(out, "u1_2x1x2x3.npy"),
        (np.arange(12) * 7 % 256).astype("|u1").reshape((2, 1, 2, 3)))
np.save(os.path.join(out, "f4_0x3.npy"), np.zeros((0, 3), "<f4"))
with open(os.path.join(out, "f4_2x3_v2.npy"), "wb") as f:
    np.lib.format.write_array(f, floats((2, 3), "<f4"), version=(2, 0))
# Rejected by our reader: Fortran order and big-endian.
np.save(os.path.join(out, "f4_3x2_fortran.npy"),
        np.asfortranarray(floats((3, 2), "<f4")))
np.save(os.path.join(out, "f4_2x2_bigendian.npy"), floats((2, 2), ">f4"))
