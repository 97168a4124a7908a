"""pvagpu.codecs against the libraries areaDetector and pvapy use.

Reference payloads are made by those libraries directly (python-lz4,
bitshuffle, python-blosc, zlib, Pillow) or built by hand from the format
description, never by pvagpu's own encoders.
"""
import io
import struct
import zlib

import bitshuffle
import blosc
import lz4.block
import numpy as np
import pytest
from PIL import Image

from pvagpu import codecs
from pvagpu.codecs import bslz4 as bslz4_module
from pvagpu.codecs import jpeg as jpeg_module
from pvagpu.codecs import zlib as zlib_module
from pvagpu.codecs import _bslz4_scan
from pvagpu.errors import CodecError, CorruptPayloadError, UnknownCodecError

LOSSLESS = ("lz4", "bslz4", "blosc", "zlib", "lz4hdf5")
ALL = LOSSLESS + ("jpeg",)
DTYPES = ("uint8", "uint16", "uint32", "int16", "float32")
KINDS = ("poisson2", "poisson200", "zeros", "uniform")
# odd sizes: 1 and 7 elements (< 8: bslz4 is all raw tail), not multiples of
# 8 or of bslz4's block, and bigger than one block
SHAPES = ((37, 53), (1,), (7,), (4099,), (129, 257))


def make(kind, dtype, shape, seed=0):
    """Detector-like test data."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind.startswith("poisson"):
        return rng.poisson(float(kind[7:]), shape).astype(dtype)
    if dtype.kind == "f":
        return rng.uniform(-1e3, 1e3, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def same_bits(decoded, original):
    expected = np.ascontiguousarray(original).reshape(-1).view(np.uint8)
    return np.array_equal(decoded.view(np.uint8), expected)


# -- reference encoders: the libraries as NDPluginCodec / pvapy use them ------

def ref_lz4(a):
    return lz4.block.compress(a.tobytes(), store_size=False)


def ref_bslz4(a):
    return bitshuffle.compress_lz4(np.ascontiguousarray(a).reshape(-1), 0)


def ref_blosc(a, cname="lz4", shuffle=blosc.BITSHUFFLE, clevel=5):
    return blosc.compress(a.tobytes(), typesize=a.itemsize, clevel=clevel, shuffle=shuffle,
                          cname=cname)


def ref_zlib(a, level=6):
    return zlib.compress(a.tobytes(), level)


def ref_lz4hdf5(raw, block):
    """HDF5 LZ4 filter (32004) framing built by hand from the format."""
    raw = bytes(raw)
    block = min(block, len(raw))
    out = [struct.pack(">QI", len(raw), block)]
    for start in range(0, len(raw), block or 1):
        chunk = raw[start:start + block]
        packed = lz4.block.compress(chunk, store_size=False)
        if len(packed) >= len(chunk):
            packed = chunk
        out.append(struct.pack(">I", len(packed)) + packed)
    return b"".join(out)


def ref_lz4hdf5_a(a, block=1 << 30):
    return ref_lz4hdf5(a.tobytes(), block)


REFERENCE = {"lz4": ref_lz4, "bslz4": ref_bslz4, "blosc": ref_blosc, "zlib": ref_zlib,
             "lz4hdf5": ref_lz4hdf5_a}


def bare_decode(name, payload, a):
    """The bare library's decode of a pvagpu-encoded payload."""
    n = a.nbytes
    if name == "lz4":
        return np.frombuffer(lz4.block.decompress(bytes(payload), uncompressed_size=n), a.dtype)
    if name == "bslz4":
        return bitshuffle.decompress_lz4(np.asarray(payload), (a.size,), a.dtype, 0)
    if name == "blosc":
        return np.frombuffer(blosc.decompress(bytes(payload)), a.dtype)
    if name == "zlib":
        return np.frombuffer(zlib.decompress(bytes(payload)), a.dtype)
    raise AssertionError(name)


@pytest.fixture(params=[True, False], ids=["libz", "stdlib"])
def zlib_path(request):
    """Decode options that run a zlib test through zlib's uncompress2 and
    through the stdlib module."""
    if request.param and not zlib_module._find_uncompress2():
        pytest.skip("no shared libz with uncompress2")
    return {"use_libz": request.param}


@pytest.fixture(params=("lz4", "bslz4", "blosc", "zlib", "zlib/stdlib", "lz4hdf5", "jpeg"))
def codec_case(request):
    """``(name, decode options)`` of every codec; zlib twice, through
    uncompress2 and through the stdlib module."""
    if request.param == "zlib/stdlib":
        return "zlib", {"use_libz": False}
    return request.param, {}


def check_result(out, a):
    assert out.dtype == a.dtype and out.ndim == 1 and out.size == a.size
    assert out.flags.writeable
    assert same_bits(out, a)


# -- registry ------------------------------------------------------------------

def test_registry_names():
    assert codecs.names() == sorted(ALL)
    for name in ALL:
        assert codecs.get(name).name == name


def test_unknown_codec():
    with pytest.raises(UnknownCodecError, match="'bogus'.*known codecs: blosc, bslz4"):
        codecs.decode("bogus", b"abc", np.uint8, 3)
    with pytest.raises(UnknownCodecError):
        codecs.encode("", np.zeros(3, np.uint8))


def test_size_not_whole_elements():
    with pytest.raises(CorruptPayloadError, match="not a whole number of uint16"):
        codecs.decode("lz4", ref_lz4(np.zeros(4, np.uint16)), np.uint16, 7)


# -- decoding the libraries' payloads, bit for bit ---------------------------------

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSSLESS)
def test_decode_reference(name, dtype, kind):
    for shape in SHAPES:
        a = make(kind, dtype, shape)
        payload = REFERENCE[name](a)
        check_result(codecs.decode(name, payload, a.dtype, a.nbytes), a)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ("lz4", "bslz4", "blosc", "zlib"))
def test_encode_matches_library(name, dtype, kind):
    """pvagpu's encode is the library's own output and the bare library decodes it."""
    for shape in SHAPES:
        a = make(kind, dtype, shape)
        payload = codecs.encode(name, a)
        assert payload.dtype == np.uint8 and payload.ndim == 1
        ref = REFERENCE[name](a) if name != "blosc" else ref_blosc(a, shuffle=blosc.SHUFFLE)
        assert payload.tobytes() == bytes(ref)
        assert same_bits(bare_decode(name, payload, a), a)


def test_zlib_both_paths(zlib_path):
    for level in (0, 1, 6, 9):
        a = make("poisson200", "uint16", (129, 257))
        check_result(codecs.decode("zlib", ref_zlib(a, level), a.dtype, a.nbytes, **zlib_path), a)
        assert codecs.encode("zlib", a, level=level).tobytes() == ref_zlib(a, level)


@pytest.mark.parametrize("shuffle", (blosc.NOSHUFFLE, blosc.SHUFFLE, blosc.BITSHUFFLE))
@pytest.mark.parametrize("cname", blosc.compressor_list())
def test_blosc_compressors(cname, shuffle):
    for dtype in ("uint8", "uint16", "float32"):
        a = make("poisson200", dtype, (129, 257), seed=3)
        for clevel in (0, 5, 9):
            ref = ref_blosc(a, cname=cname, shuffle=shuffle, clevel=clevel)
            check_result(codecs.decode("blosc", ref, a.dtype, a.nbytes), a)
        ours = codecs.encode("blosc", a, clevel=5, shuffle=shuffle, cname=cname)
        assert ours.tobytes() == ref_blosc(a, cname=cname, shuffle=shuffle, clevel=5)


@pytest.mark.parametrize("name", LOSSLESS)
def test_empty_frame(name):
    a = np.zeros(0, np.uint16)
    payload = codecs.encode(name, a)
    check_result(codecs.decode(name, payload, a.dtype, 0), a)


def test_inputs_of_any_buffer_type():
    a = make("poisson2", "uint16", (37, 53))
    payload = ref_bslz4(a)
    for buf in (payload.tobytes(), bytearray(payload.tobytes()), memoryview(payload.tobytes()),
                np.frombuffer(payload.tobytes(), np.uint8),          # read-only
                np.repeat(payload, 2)[::2]):                          # not contiguous
        check_result(codecs.decode("bslz4", buf, a.dtype, a.nbytes), a)


# -- bslz4 specifics ---------------------------------------------------------------

def test_bslz4_known_answer():
    """INTEROP 2.2: 42 uint16 -> one 40-element block + 2 raw elements. The
    first word is that block's compressed length, so it depends on the data;
    0x3e (70 bytes in all) is what arange(42)**2 gives."""
    a = (np.arange(42) ** 2).astype(np.uint16)
    payload = codecs.encode("bslz4", a)
    assert payload[:4].tobytes() == b"\x00\x00\x00\x3e"
    assert payload.size == 70 == 4 + 0x3E + 2 * 2
    assert payload[-4:].tobytes() == a[40:].tobytes()
    check_result(codecs.decode("bslz4", payload, np.uint16, a.nbytes), a)


@pytest.mark.parametrize("dtype", ("uint8", "uint16", "uint32", "float64", "complex128"))
def test_bslz4_default_block_size_is_the_library_default(dtype):
    a = make("poisson200", "uint32", (50000,)).astype(dtype)
    block = bslz4_module.default_block_size(a.itemsize)
    assert block == {1: 8192, 2: 4096, 4: 2048, 8: 1024, 16: 512}[a.itemsize]
    assert bitshuffle.compress_lz4(a, 0).tobytes() == bitshuffle.compress_lz4(a, block).tobytes()


@pytest.mark.parametrize("block", (0, 8, 64, 1000, 20000))
def test_bslz4_hdf5_header(block):
    """pvapy's sim server -hcm sends HDF5 bitshuffle chunks: 12-byte header
    (uint64 BE total bytes, uint32 BE block size in bytes), any block size."""
    for dtype in ("uint8", "uint16", "float32"):
        for shape in ((7,), (4099,), (129, 257)):
            a = make("poisson2", dtype, shape)
            effective = block or bslz4_module.default_block_size(a.itemsize)
            ref = struct.pack(">QI", a.nbytes, effective * a.itemsize) + \
                bitshuffle.compress_lz4(a.reshape(-1), block).tobytes()
            check_result(codecs.decode("bslz4", ref, a.dtype, a.nbytes), a)
            ours = codecs.encode("bslz4", a, block_size=block, hdf5_header=True)
            assert ours.tobytes() == ref


def test_bslz4_hdf5_chunk_from_h5py(tmp_path):
    """A chunk written by bitshuffle's own HDF5 filter, read back raw."""
    h5py = pytest.importorskip("h5py")
    h5 = pytest.importorskip("bitshuffle.h5")
    a = make("poisson2", "uint16", (129, 257))
    with h5py.File(tmp_path / "chunk.h5", "w") as f:
        dataset = h5py.Dataset(h5.create_dataset(
            f, b"data", a.shape, a.dtype, chunks=a.shape, filter_pipeline=(h5.H5FILTER,),
            filter_flags=(h5py.h5z.FLAG_MANDATORY,), filter_opts=((0, h5.H5_COMPRESS_LZ4),)))
        dataset[...] = a
        _, chunk = dataset.id.read_direct_chunk((0, 0))
    assert struct.unpack(">Q", chunk[:8])[0] == a.nbytes
    check_result(codecs.decode("bslz4", chunk, a.dtype, a.nbytes), a)


def test_bslz4_headerless_payload_that_looks_like_a_header():
    """< 8 elements are raw bytes; if they happen to read as the size, the
    length still tells the layouts apart."""
    a = np.zeros(7, np.uint64)
    a[0] = np.frombuffer(struct.pack(">Q", 56), "<u8")[0]
    payload = ref_bslz4(a)
    assert struct.unpack(">Q", payload[:8].tobytes())[0] == a.nbytes
    check_result(codecs.decode("bslz4", payload, a.dtype, a.nbytes), a)


def test_bslz4_scan_accepts_every_valid_block():
    """The LZ4 check that guards the last blocks must accept whatever
    bitshuffle writes: parse every block of varied payloads."""
    rng = np.random.default_rng(7)
    for i, dtype in enumerate(("uint8", "int16", "uint32", "float32", "float64") * 4):
        n = int(rng.integers(1, 40000))
        a = make(KINDS[i % 4], dtype, (n,), seed=i)
        if i % 5 == 4:
            a = np.repeat(a[: n // 50 + 1], 50)[:n]        # long runs
        block = bslz4_module.default_block_size(a.itemsize)
        payload = ref_bslz4(a)
        partial = (n % block) // 8 * 8
        status, index, pos, _ = _bslz4_scan.scan(
            payload, 0, n // block + bool(partial), block * a.itemsize, partial * a.itemsize, 0)
        assert status == _bslz4_scan.OK, (dtype, n, index)
        assert pos + (n % 8) * a.itemsize == payload.size


def test_bslz4_bad_last_block_never_reaches_the_library(monkeypatch):
    """A last block whose LZ4 data would run LZ4_decompress_fast off the end
    of the payload is refused before bitshuffle is called."""
    a = make("poisson200", "uint16", (129, 257))
    payload = ref_bslz4(a).copy()
    n_full = a.size // 4096
    pos = 0
    for _ in range(n_full):
        pos += 4 + struct.unpack(">I", payload[pos:pos + 4].tobytes())[0]
    length = struct.unpack(">I", payload[pos:pos + 4].tobytes())[0]
    payload[pos + 4:pos + 4 + length] = 0xFF       # literal length that never ends
    monkeypatch.setattr(bslz4_module._bitshuffle, "decompress_lz4",
                        lambda *args: pytest.fail("bitshuffle was called"))
    with pytest.raises(CorruptPayloadError, match="not a valid LZ4 block"):
        codecs.decode("bslz4", payload, a.dtype, a.nbytes)


def test_bslz4_framing_errors():
    a = make("poisson2", "uint16", (129, 257))
    payload = ref_bslz4(a).copy()
    first = struct.unpack(">I", payload[:4].tobytes())[0]
    bad = payload.copy()
    bad[:4] = np.frombuffer(struct.pack(">I", payload.size), np.uint8)
    with pytest.raises(CorruptPayloadError,
                       match=r"block 0 of 9 .* claims \d+ bytes at byte 4, only"):
        codecs.decode("bslz4", bad, a.dtype, a.nbytes)
    bad[:4] = np.frombuffer(struct.pack(">I", first - 1), np.uint8)
    with pytest.raises(CorruptPayloadError):
        codecs.decode("bslz4", bad, a.dtype, a.nbytes)
    with pytest.raises(CorruptPayloadError, match=r"end at byte \d+, payload is \d+ bytes"):
        codecs.decode("bslz4", np.concatenate((payload, payload[:3])), a.dtype, a.nbytes)
    header = struct.pack(">QI", a.nbytes, 12)      # block of 6 elements: not a multiple of 8
    with pytest.raises(CorruptPayloadError, match="not a positive multiple of 8"):
        codecs.decode("bslz4", header + payload.tobytes(), a.dtype, a.nbytes)


def test_bslz4_encode_options():
    a = np.zeros(100, np.uint16)
    with pytest.raises(CodecError, match="hdf5_header=True"):
        codecs.encode("bslz4", a, block_size=64)
    with pytest.raises(CodecError, match="multiple of 8"):
        codecs.encode("bslz4", a, block_size=12, hdf5_header=True)


# -- lz4 / lz4hdf5 specifics --------------------------------------------------------

def test_lz4_hdf5_chunk_payload():
    """pvapy's sim server -hcm sends HDF5 LZ4-filter chunks named "lz4"."""
    a = make("poisson2", "uint16", (129, 257))
    for block in (1 << 30, 4096):
        ref = ref_lz4hdf5_a(a, block)
        check_result(codecs.decode("lz4", ref, a.dtype, a.nbytes), a)


def test_lz4_raw_block_never_starts_with_zero():
    for kind in KINDS:
        a = make(kind, "uint16", (7,))
        assert ref_lz4(a)[0] != 0


def test_lz4hdf5_stored_and_compressed_blocks():
    rng = np.random.default_rng(1)
    raw = np.concatenate((np.zeros(1000, np.uint8), rng.integers(0, 256, 1000, dtype=np.uint8),
                          np.zeros(500, np.uint8), rng.integers(0, 256, 300, dtype=np.uint8)))
    ref = ref_lz4hdf5(raw, 1000)
    lengths, pos = [], 12
    while pos < len(ref):
        lengths.append(struct.unpack(">I", ref[pos:pos + 4])[0])
        pos += 4 + lengths[-1]
    assert lengths[1] == 1000 and lengths[0] < 1000 and lengths[2] < 800
    assert len(lengths) == 3
    check_result(codecs.decode("lz4hdf5", ref, np.uint8, raw.size), raw)
    assert codecs.encode("lz4hdf5", raw, block_size=1000).tobytes() == ref
    # one block, stored raw
    noise = rng.integers(0, 256, 999, dtype=np.uint8)
    ref = ref_lz4hdf5(noise, 1 << 30)
    assert struct.unpack(">I", ref[12:16])[0] == 999
    check_result(codecs.decode("lz4hdf5", ref, np.uint8, noise.size), noise)


@pytest.mark.parametrize("block", (8, 1000, 4096, 1 << 30))
def test_lz4hdf5_block_sizes(block):
    for dtype in ("uint8", "uint16", "float32"):
        a = make("poisson2", dtype, (129, 257))
        ref = ref_lz4hdf5_a(a, block)
        check_result(codecs.decode("lz4hdf5", ref, a.dtype, a.nbytes), a)
        assert codecs.encode("lz4hdf5", a, block_size=block).tobytes() == ref


def test_lz4hdf5_against_imagecodecs():
    imagecodecs = pytest.importorskip("imagecodecs")
    a = make("poisson2", "uint16", (129, 257))
    for block in (4096, 1 << 20):
        ref = imagecodecs.lz4h5_encode(a.tobytes(), blocksize=block)
        check_result(codecs.decode("lz4hdf5", ref, a.dtype, a.nbytes), a)
        ours = codecs.encode("lz4hdf5", a, block_size=block)
        assert imagecodecs.lz4h5_decode(ours.tobytes()) == a.tobytes()


def test_lz4hdf5_header_errors():
    a = make("poisson2", "uint16", (37, 53))
    ref = ref_lz4hdf5_a(a, 1000)
    with pytest.raises(CorruptPayloadError,
                       match="header says 3922 uncompressed bytes, uncompressedSize is 3924"):
        codecs.decode("lz4hdf5", ref, a.dtype, a.nbytes + 2)
    zero_block = ref[:8] + struct.pack(">I", 0) + ref[12:]
    with pytest.raises(CorruptPayloadError, match="block size is 0"):
        codecs.decode("lz4hdf5", zero_block, a.dtype, a.nbytes)
    with pytest.raises(CodecError, match="block_size"):
        codecs.encode("lz4hdf5", a, block_size=-5)


# -- jpeg -----------------------------------------------------------------------

def pil_jpeg(a, quality=90):
    buf = io.BytesIO()
    Image.fromarray(a.view(np.uint8)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.parametrize("in_place", (True, False), ids=("in-place", "copied"))
@pytest.mark.parametrize("dtype", ("uint8", "int8"))
@pytest.mark.parametrize("shape", ((37, 53), (1, 1), (512, 640), (64, 48, 3), (37, 53, 3)))
def test_jpeg(dtype, shape, in_place):
    a = make("poisson200", "uint8", shape).view(dtype)
    ref = pil_jpeg(a)
    expected = np.asarray(Image.open(io.BytesIO(ref))).reshape(-1).view(dtype)
    out = codecs.decode("jpeg", ref, a.dtype, a.nbytes, in_place=in_place)
    assert out.dtype == a.dtype and out.flags.writeable and np.array_equal(out, expected)
    ours = codecs.encode("jpeg", a)
    assert ours.tobytes() == ref          # same library, same settings
    if in_place and len(shape) == 2:   # the mono fast path decodes into the result itself
        image = Image.open(io.BytesIO(ref))
        buf = np.empty(a.nbytes, np.uint8)
        assert jpeg_module._load_into(image, buf) and np.array_equal(buf.view(dtype), expected)
    for quality in (10, 100):
        small = codecs.encode("jpeg", a, quality=quality)
        assert Image.open(io.BytesIO(small.tobytes())).size == (shape[1], shape[0])


def test_jpeg_quality_100_is_close():
    a = np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))
    out = codecs.decode("jpeg", codecs.encode("jpeg", a, quality=100), np.uint8, a.nbytes)
    assert np.abs(out.astype(int) - a.reshape(-1)).max() <= 2


@pytest.mark.parametrize("dtype", ("uint16", "float32", "int32", "bool"))
def test_jpeg_needs_8_bit(dtype):
    a = np.zeros((8, 8), dtype)
    with pytest.raises(CodecError, match=f"cannot encode {dtype} data; JPEG holds uint8/int8 only"):
        codecs.encode("jpeg", a)
    ref = pil_jpeg(np.zeros((8, 8), np.uint8))
    with pytest.raises(CodecError, match=f"cannot decode to {dtype} data"):
        codecs.decode("jpeg", ref, dtype, 64 * np.dtype(dtype).itemsize)


def test_jpeg_errors():
    a = make("poisson200", "uint8", (37, 53))
    ref = pil_jpeg(a)
    with pytest.raises(CorruptPayloadError,
                       match="image is 37x53x1 = 1961 bytes, uncompressedSize is 5883"):
        codecs.decode("jpeg", ref, np.uint8, 3 * a.nbytes)
    png = io.BytesIO()
    Image.fromarray(a).save(png, format="PNG")
    with pytest.raises(CorruptPayloadError):
        codecs.decode("jpeg", png.getvalue(), np.uint8, a.nbytes)
    with pytest.raises(CorruptPayloadError):       # ends with EOI, but is not a JPEG
        codecs.decode("jpeg", b"\x00" * 20 + b"\xff\xd9", np.uint8, a.nbytes)
    with pytest.raises(CodecError, match="quality"):
        codecs.encode("jpeg", a, quality=0)
    with pytest.raises(CodecError, match="shape"):
        codecs.encode("jpeg", np.zeros((4, 4, 4), np.uint8))


# -- corruption ----------------------------------------------------------------

def sample_payload(name, dtype="uint16", shape=(129, 257)):
    if name == "jpeg":
        a = make("poisson200", "uint8", (37, 53))
        return a, np.frombuffer(pil_jpeg(a), np.uint8)
    a = make("poisson2", dtype, shape)
    return a, np.frombuffer(bytes(REFERENCE[name](a)), np.uint8)


def test_truncated(codec_case):
    name, options = codec_case
    a, payload = sample_payload(name)
    n = payload.size
    for cut in sorted({0, 1, 2, 4, 8, 11, 12, 15, 16, 17, n // 2, n - 4, n - 1} & set(range(n))):
        with pytest.raises(CorruptPayloadError):
            codecs.decode(name, payload[:cut], a.dtype, a.nbytes, **options)


def test_trailing_bytes(codec_case):
    name, options = codec_case
    a, payload = sample_payload(name)
    for extra in (b"\x00", b"\x17\x42\x99\x00"):
        with pytest.raises(CorruptPayloadError):
            codecs.decode(name, payload.tobytes() + extra, a.dtype, a.nbytes, **options)


def test_wrong_uncompressed_size(codec_case):
    name, options = codec_case
    a, payload = sample_payload(name)
    step = a.itemsize
    for size in (a.nbytes - step, a.nbytes + step, a.nbytes * 2, a.nbytes // 2, 0):
        with pytest.raises(CorruptPayloadError):
            codecs.decode(name, payload, a.dtype, size, **options)


#: codecs with a checksum: a changed payload must never decode to a different image
CHECKSUMMED = ("zlib",)


def test_random_corruption(codec_case):
    """Seeded byte flips / random bytes: CorruptPayloadError, or (codecs
    without a checksum) an image of the right size; never a crash."""
    name, options = codec_case
    rng = np.random.default_rng(sum(map(ord, name)))
    samples = [sample_payload(name)] if name == "jpeg" else \
        [sample_payload(name, dtype, shape) for dtype, shape in
         (("uint16", (129, 257)), ("uint8", (37, 53)), ("float32", (7,)))]
    outcomes = {"raised": 0, "decoded": 0}
    for trial in range(300):
        a, payload = samples[trial % len(samples)]
        bad = payload.copy()
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(0, bad.size))
            if trial % 2:
                bad[i] ^= np.uint8(1 << int(rng.integers(0, 8)))
            else:
                bad[i] = rng.integers(0, 256)
        try:
            out = codecs.decode(name, bad, a.dtype, a.nbytes, **options)
        except CorruptPayloadError:
            outcomes["raised"] += 1
            continue
        outcomes["decoded"] += 1
        assert out.dtype == a.dtype and out.size == a.size and out.flags.writeable
        if name in CHECKSUMMED:
            assert same_bits(out, a)   # only flips that change nothing may pass
    assert outcomes["raised"] > 0


def test_library_errors_are_chained(codec_case):
    name, options = codec_case
    # bslz4: big enough that the first block is left to the library
    a, payload = sample_payload(name, shape=(512, 512) if name == "bslz4" else (129, 257))
    bad = payload.copy()
    if name == "jpeg":
        bad = bad[:2].tobytes() + b"\x00" * (bad.size - 4) + b"\xff\xd9"
    elif name == "blosc":
        nbytes, blocksize = struct.unpack("<II", bad[4:12].tobytes())
        bad[16 + 4 * -(-nbytes // blocksize):] ^= 0x5A    # keep header and offsets, spoil data
    elif name in ("lz4", "lz4hdf5"):
        bad[0 if name == "lz4" else 16:] = 0xFF
    elif name == "bslz4":
        bad[4:4 + 40] ^= 0x5A               # first block: not checked before the library
    else:
        bad[10:20] ^= 0xFF
    with pytest.raises(CorruptPayloadError) as info:
        codecs.decode(name, bad, a.dtype, a.nbytes, **options)
    # libz's uncompress2 is a C call: nothing to chain
    if name != "zlib" or not options.get("use_libz", True):
        assert info.value.__cause__ is not None


def test_blosc_header_checks():
    a, payload = sample_payload("blosc")
    with pytest.raises(CorruptPayloadError,
                       match="header says 66306 uncompressed bytes, uncompressedSize is 66308"):
        codecs.decode("blosc", payload, a.dtype, a.nbytes + 2)
    bad = payload.copy()
    bad[0] = 9
    with pytest.raises(CorruptPayloadError, match="format version 9"):
        codecs.decode("blosc", bad, a.dtype, a.nbytes)
    bad = payload.copy()
    bad[12:16] = np.frombuffer(struct.pack("<I", payload.size + 100), np.uint8)
    with pytest.raises(CorruptPayloadError,
                       match=r"header says \d+ compressed bytes, payload is \d+ bytes"):
        codecs.decode("blosc", bad, a.dtype, a.nbytes)
    bad = payload.copy()
    bad[16:20] = np.frombuffer(struct.pack("<I", payload.size + 5), np.uint8)
    with pytest.raises(CorruptPayloadError):       # a block offset past the end: c-blosc's check
        codecs.decode("blosc", bad, a.dtype, a.nbytes)


def test_blosc_encode_options():
    a = np.zeros(100, np.uint16)
    with pytest.raises(CodecError, match="compressor 'nope'"):
        codecs.encode("blosc", a, cname="nope")
    with pytest.raises(CodecError, match="shuffle"):
        codecs.encode("blosc", a, shuffle=3)
    with pytest.raises(CodecError, match="clevel"):
        codecs.encode("blosc", a, clevel=10)


def test_zlib_longer_stream(zlib_path):
    a = make("poisson2", "uint16", (37, 53))
    with pytest.raises(CorruptPayloadError, match="more than uncompressedSize"):
        codecs.decode("zlib", ref_zlib(a), a.dtype, a.nbytes - 2, **zlib_path)
    with pytest.raises(CorruptPayloadError, match="trailing data"):
        codecs.decode("zlib", ref_zlib(a) + ref_zlib(a), a.dtype, a.nbytes, **zlib_path)
