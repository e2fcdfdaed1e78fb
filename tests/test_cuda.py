"""The CUDA path, tested as far as possible without a GPU.

- nvcc compiles the kernel source for sm_80 and sm_90, without atomics;
- the same source built as host C++ (g++) runs the gather over numpy columns
  and reproduces the CPU path, including float16 rounding bit for bit;
- ``convt_blas.cuda`` runs end to end against a stand-in for CuPy whose cuBLAS
  is numpy (with cuBLAS's argument rules) and whose kernels are the host build:
  pointers, strides, chunking, dtypes, the TF32 switch and every error are
  checked without a device;
- with CuPy and a GPU, the real thing against the CPU path and torch's CUDA path.
"""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from conftest import assert_close

import convt_blas
from convt_blas import cuda
from convt_blas._validation import check_arguments

KERNEL_SOURCE = os.path.join(convt_blas.get_include(), "convt_blas_cuda.cuh")
ARCHES = ("sm_80", "sm_90")
DTYPES = (np.float32, np.float64, np.float16)
C_TYPES = {"float": np.dtype(np.float32), "double": np.dtype(np.float64),
           "convt_blas_half": np.dtype(np.float16)}
LONG_LONG = "long long"


# ---------------------------------------------------------------- configurations

# Corner cases: stride and dilation sharing a factor (taps on a residue subset),
# kernels shorter than the stride (gaps), heavy padding, depthwise groups, L_in = 1.
SPECIAL = [
    # (N, C_in, C_out/groups, K, L_in, stride, padding, output_padding, groups, dilation)
    (2, 3, 2, 7, 9, 4, 1, 1, 1, 2),
    (1, 4, 3, 7, 5, 6, 2, 3, 2, 4),
    (2, 2, 2, 5, 6, 1, 3, 0, 1, 3),
    (3, 2, 1, 2, 4, 5, 0, 4, 1, 1),
    (1, 6, 1, 4, 7, 3, 4, 2, 6, 2),
    (2, 3, 4, 3, 1, 2, 0, 1, 1, 1),
    (1, 2, 2, 9, 3, 3, 8, 0, 2, 3),
]


def random_configs(seed, count):
    """Valid random argument sets (the tuple layout of SPECIAL)."""
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        groups = int(rng.choice([1, 1, 2, 3]))
        k, stride, dilation = (int(v) for v in rng.integers(1, [9, 7, 5]))
        config = (int(rng.integers(1, 4)), groups * int(rng.integers(1, 4)),
                  int(rng.integers(1, 4)), k, int(rng.integers(1, 12)), stride,
                  int(rng.integers(0, dilation * (k - 1) // 2 + 2)),
                  int(rng.integers(0, max(stride, dilation))), groups, dilation)
        try:
            spec_of(config)
        except ValueError:
            continue
        configs.append(config)
    return configs


def spec_of(config):
    n, c_in, c_out_g, k, length, stride, padding, output_padding, groups, dilation = config
    return check_arguments((n, c_in, length), (c_in, c_out_g, k), None, stride, padding,
                           output_padding, groups, dilation)


def operands(config, dtype, rng, with_bias=True):
    n, c_in, c_out_g, k, length, *_, groups, _ = config
    x = rng.standard_normal((n, c_in, length)).astype(dtype)
    w = rng.standard_normal((c_in, c_out_g, k)).astype(dtype)
    b = rng.standard_normal(c_out_g * groups).astype(dtype) if with_bias else None
    return x, w, b


def conv_kwargs(config):
    *_, stride, padding, output_padding, groups, dilation = config
    return dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
                dilation=dilation)


def numpy_columns(x, w, groups, dtype):
    """columns[n, co, k, l] = (W_gᵀ · X_g)[co_g*K + k, l], in float64, stored as ``dtype``."""
    n, c_in, length = x.shape
    _, c_out_g, k = w.shape
    xg = x.astype(np.float64).reshape(n, groups, c_in // groups, length)
    wg = w.astype(np.float64).reshape(groups, c_in // groups, c_out_g * k)
    columns = np.einsum("gim,ngil->ngml", wg, xg)
    return np.ascontiguousarray(columns.reshape(n, groups * c_out_g, k, length).astype(dtype))


# ---------------------------------------------------------------- builds (once per session)

def _tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not found on PATH")
    return path


@pytest.fixture(scope="module")
def nvcc_build(tmp_path_factory):
    """One nvcc run for both architectures, keeping the PTX it generates."""
    nvcc = _tool("nvcc")
    out = tmp_path_factory.mktemp("nvcc")
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in ARCHES]
    result = subprocess.run(
        [nvcc, "-x", "cu", "-c", *gencode, "-Wno-deprecated-gpu-targets", "--keep",
         f"--keep-dir={out}", KERNEL_SOURCE, "-o", str(out / "gather.o")],
        capture_output=True, text=True, cwd=out)
    return result, out


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """The .cuh compiled by the host C++ compiler, entry points exported (a serial 'grid')."""
    compiler = _tool(os.environ.get("CXX", "g++"))
    library = tmp_path_factory.mktemp("host") / "gather_host.so"
    result = subprocess.run(
        [compiler, "-x", "c++", "-std=c++11", "-O2", "-Wall", "-Wextra", "-shared", "-fPIC",
         "-DCONVT_BLAS_CUDA_HOST_ENTRIES", KERNEL_SOURCE, "-o", str(library)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    lib = ctypes.CDLL(str(library))
    return {name: HostKernel(getattr(lib, name), params)
            for name, params in kernel_signatures().items()}


def kernel_signatures():
    """{entry name: [(param name, numpy dtype of the pointee or LONG_LONG)]}, from the .cuh."""
    with open(KERNEL_SOURCE) as f:
        text = f.read()
    body = re.search(r"#define CONVT_BLAS_CUDA_GATHER_PARAMS\(Column, Value\)((?:.*\\\n)*.*)",
                     text).group(1)
    params = [p.replace("\\", " ").split() for p in body.split(",")]
    signatures = {}
    for name, column, value in re.findall(
            r"^CONVT_BLAS_CUDA_GATHER_ENTRY\((\w+), (\w+), (\w+), [\w ]+, [\w ]+\)$", text, re.M):
        types_ = {"Column": C_TYPES[column], "Value": C_TYPES[value]}
        signatures[name] = [_param(p, types_) for p in params]
    assert set(signatures) == {cuda._kernel_name(np.dtype(t), bits)
                               for t in DTYPES for bits in (32, 64)}
    return signatures


def _param(tokens, element_types):
    name = tokens[-1]
    if tokens[:2] == ["long", "long"]:
        return name, LONG_LONG
    element = next(t.rstrip("*") for t in tokens if t.rstrip("*") in element_types)
    return name, element_types[element]


class HostKernel:
    """A host-built entry point called like a kernel: numpy arrays for pointers
    (None for a null bias), numpy.int64 for every `long long`, strictly typed."""

    def __init__(self, function, params):
        self.function, self.params = function, params

    def __call__(self, *args):
        assert len(args) == len(self.params), (len(args), self.params)
        sizes = {name: int(a) for (name, kind), a in zip(self.params, args) if kind is LONG_LONG}
        extents = {"columns": sizes["batch"] * sizes["out_channels"] * sizes["kernel_size"]
                   * sizes["in_length"],
                   "out": sizes["batch"] * sizes["out_channels"] * sizes["out_length"],
                   "bias": sizes["out_channels"]}
        c_args = []
        for (name, kind), arg in zip(self.params, args):
            if kind is LONG_LONG:
                assert type(arg) is np.int64, (name, type(arg))
                c_args.append(ctypes.c_longlong(int(arg)))
            elif arg is None:
                assert name == "bias", f"null pointer passed as {name}"
                c_args.append(ctypes.c_void_p(0))
            else:
                assert arg.dtype == kind and arg.flags.c_contiguous, (name, arg.dtype, kind)
                assert arg.size >= extents[name], (name, arg.size, extents[name])
                c_args.append(ctypes.c_void_p(arg.ctypes.data))
        self.function(*c_args)


# ---------------------------------------------------------------- nvcc

@pytest.mark.parametrize("arch", ARCHES)
def test_kernel_source_compiles_with_nvcc(nvcc_build, arch):
    result, out = nvcc_build
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr.lower(), result.stderr
    binary = (out / "gather.o").read_bytes()
    assert f"-arch {arch} ".encode() in binary  # the fatbin holds a cubin for this arch
    for name in kernel_signatures():
        assert f".text.{name}".encode() in binary


def test_kernels_use_no_atomics(nvcc_build):
    result, out = nvcc_build
    assert result.returncode == 0, result.stderr
    ptx = sorted(out.glob("*.ptx"))
    assert len(ptx) == len(ARCHES), sorted(p.name for p in out.iterdir())
    for path in ptx:
        text = path.read_text()
        for name in kernel_signatures():
            assert f".entry {name}(" in text
        assert not re.search(r"^\s*(atom|red)\.", text, re.M), f"atomic instruction in {path.name}"


# ---------------------------------------------------------------- host build of the gather

def run_host_gather(host_kernels, x, w, b, config, columns=None, index_bits=32):
    """The gather entry for x's dtype over numpy columns, as the CUDA path launches it."""
    spec = spec_of(config)
    dtype = x.dtype
    column_dtype = np.float64 if dtype == np.float64 else np.float32
    if columns is None:
        columns = numpy_columns(x, w, spec.groups, column_dtype)
    out = np.full((spec.batch, spec.out_channels, spec.out_length), np.nan, dtype)
    geometry = [np.int64(v) for v in cuda._gather_geometry(spec, spec.batch)]
    host_kernels[cuda._kernel_name(dtype, index_bits)](columns, b, out, *geometry)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
def test_host_gather_matches_cpu_path(host_kernels, dtype):
    rng = np.random.default_rng(7)
    for i, config in enumerate(SPECIAL + random_configs(int(np.dtype(dtype).num), 40)):
        x, w, b = operands(config, dtype, rng, with_bias=i % 3 != 0)
        expected = convt_blas.conv_transpose1d(x, w, b, **conv_kwargs(config))
        for index_bits in (32, 64):
            got = run_host_gather(host_kernels, x, w, b, config, index_bits=index_bits)
            assert_close(got, expected, dtype)


def test_host_gather_matches_reference_exactly_in_float64(host_kernels):
    """Integer-valued data: every sum is exact, so any misplaced tap shows as an error."""
    from convt_blas.reference import conv_transpose1d_reference
    rng = np.random.default_rng(3)
    for config in SPECIAL + random_configs(11, 30):
        x, w, b = (a.round() for a in operands(config, np.float64, rng))
        x, w, b = x * 4, w * 4, b * 4
        expected = conv_transpose1d_reference(x, w, b, **conv_kwargs(config))
        for index_bits in (32, 64):
            got = run_host_gather(host_kernels, x, w, b, config, index_bits=index_bits)
            np.testing.assert_array_equal(got, expected)


def test_host_half_rounding_matches_numpy(host_kernels):
    """With K = 1 and stride 1 the output is the columns rounded to float16 (or the
    bias read back): bit for bit what numpy's float32 -> float16 cast gives."""
    rng = np.random.default_rng(5)
    magnitudes = np.exp2(rng.uniform(-27, 17, 4000)).astype(np.float32)
    ties = (np.arange(1, 2000, dtype=np.float32) + 0.5) * np.float32(2 ** -24)  # half-ulp ties
    # (no -0.0: the sum starts at +0.0, as the CPU path's does)
    values = np.concatenate([magnitudes, -magnitudes, ties, [0.0, 65504, 65519.99, 65520,
                                                              np.inf, -np.inf, 2 ** -25]])
    values = values.astype(np.float32).reshape(1, -1, 1)
    config = (1, 1, values.shape[1], 1, 1, 1, 0, 0, 1, 1)
    x = np.ones((1, 1, 1), np.float16)
    w = np.zeros((1, values.shape[1], 1), np.float16)
    got = run_host_gather(host_kernels, x, w, None, config, columns=values.reshape(1, -1, 1, 1))
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16)
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))

    bias = rng.standard_normal(values.shape[1]).astype(np.float16)
    bias[:50] = np.float16(2 ** -24) * np.arange(50)  # subnormal halves
    zero_columns = np.zeros((1, values.shape[1], 1, 1), np.float32)
    got = run_host_gather(host_kernels, x, w, bias, config, columns=zero_columns)
    np.testing.assert_array_equal(got.reshape(-1).view(np.uint16), bias.view(np.uint16))


# ---------------------------------------------------------------- dispatch without CuPy

def _cupy_looking(module="cupy._core.core"):
    return type("ndarray", (), {"__module__": module})()


def test_cupy_array_without_cupy_raises_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now fails, installed or not
    w = np.ones((2, 3, 4), np.float32)
    with pytest.raises(ImportError, match=r"CuPy.*convt_blas\[cuda\]"):
        convt_blas.conv_transpose1d(_cupy_looking(), w)
    with pytest.raises(ImportError, match="CuPy"):
        cuda.conv_transpose1d(_cupy_looking(), w)


def test_numpy_inputs_never_touch_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    x, w = np.ones((1, 2, 5), np.float32), np.ones((2, 3, 4), np.float32)
    assert convt_blas.conv_transpose1d(x, w).shape == (1, 3, 8)
    # a producer whose module merely contains "cupy" is not CuPy
    assert not type(_cupy_looking("mycupy")).__module__.startswith("cupy")


def test_allow_tf32_defaults_to_torchs_convolution_default():
    torch = pytest.importorskip("torch")
    assert cuda.allow_tf32 is True
    assert cuda.allow_tf32 == torch.backends.cudnn.allow_tf32


# ---------------------------------------------------------------- a stand-in for CuPy

class FakeCupy(types.ModuleType):
    """Just the CuPy surface ``convt_blas.cuda`` uses, on host memory.

    Arrays are numpy arrays tagged with a device; every allocation is recorded,
    so GEMM and kernel pointers are checked to lie inside an allocation of the
    current device before anything is read or written. The GEMM follows cuBLAS:
    column-major operands, 32-bit sizes, leading dimensions no smaller than the
    rows, and only the type combinations cuBLAS lists for cublasGemmStridedBatchedEx.
    """

    # enum values of cublas_api.h and library_types.h
    CUBLAS = dict(CUBLAS_OP_N=0, CUBLAS_OP_T=1, CUBLAS_GEMM_DEFAULT=-1, CUBLAS_COMPUTE_32F=68,
                  CUBLAS_COMPUTE_32F_PEDANTIC=69, CUBLAS_COMPUTE_64F=70,
                  CUBLAS_COMPUTE_32F_FAST_TF32=77)
    RUNTIME = dict(CUDA_R_32F=0, CUDA_R_64F=1, CUDA_R_16F=2)

    def __init__(self, kernels, compute_capability="90"):
        super().__init__("cupy")
        self.host_kernels = kernels
        self.compute_capability = compute_capability
        self.allocations = []  # (start, end, device id, owner)
        self.device_stack = [0]
        self.gemm_calls = []
        self.modules_built = []
        self.functions_loaded = []
        fake = self

        class ndarray:
            __module__ = "cupy"

            def __init__(self, host, device_id):
                self.host, self.device_id = host, device_id
                fake._register(host, device_id)

            shape = property(lambda self: self.host.shape)
            dtype = property(lambda self: self.host.dtype)
            ndim = property(lambda self: self.host.ndim)
            size = property(lambda self: self.host.size)
            itemsize = property(lambda self: self.host.itemsize)
            flags = property(lambda self: types.SimpleNamespace(
                c_contiguous=self.host.flags.c_contiguous))
            data = property(lambda self: types.SimpleNamespace(ptr=self.host.ctypes.data))
            device = property(lambda self: FakeDevice(fake, self.device_id))

            def __getitem__(self, key):
                return ndarray(self.host[key], self.device_id)

            def reshape(self, *shape):
                return ndarray(self.host.reshape(*shape), self.device_id)

            def get(self):
                return self.host.copy()

        self.ndarray = ndarray
        self.cuda = types.SimpleNamespace(
            Device=lambda device_id=None: FakeDevice(
                fake, fake.device_stack[-1] if device_id is None else device_id),
            device=types.SimpleNamespace(get_cublas_handle=lambda: 1000 + fake.device_stack[-1]),
            cublas=types.SimpleNamespace(gemmStridedBatchedEx=self._gemm))

    # array API
    def asarray(self, host, device_id=None):
        """A copy on ``device_id``, by default the current device (as CuPy does)."""
        if device_id is None:
            device_id = self.device_stack[-1]
        return self.ndarray(np.array(host), device_id)

    def ascontiguousarray(self, a):
        return self.ndarray(np.ascontiguousarray(a.host), a.device_id)

    def empty(self, shape, dtype):
        host = np.empty(shape, dtype)
        if host.dtype.kind == "f":
            host.fill(np.nan)  # what nobody writes shows up
        return self.ndarray(host, self.device_stack[-1])

    def may_share_memory(self, a, b):
        return np.may_share_memory(a.host, b.host)

    def RawModule(self, code, options=()):
        with open(KERNEL_SOURCE) as f:
            assert code == f.read()
        self.modules_built.append(self.device_stack[-1])
        return types.SimpleNamespace(get_function=self._get_function)

    def _get_function(self, name):
        self.functions_loaded.append(name)
        return FakeKernel(self, self.host_kernels[name], self.device_stack[-1])

    # memory checks
    def _register(self, host, device_id):
        base = host
        while isinstance(base.base, np.ndarray):
            base = base.base
        start = base.ctypes.data
        if not any(a[0] == start and a[3] is base for a in self.allocations):
            self.allocations.append((start, start + base.nbytes, device_id, base))

    def check_range(self, ptr, nbytes, what):
        device = self.device_stack[-1]
        assert any(start <= ptr and ptr + nbytes <= end and dev == device
                   for start, end, dev, _ in self.allocations), \
            f"{what}: [{ptr:#x}, +{nbytes}) is outside every allocation on device {device}"

    def _matrices(self, ptr, type_code, rows, cols, ld, stride, batch, what):
        """The batch of column-major rows×cols matrices at ptr, as a numpy view."""
        dtype = {v: np.dtype(t) for v, t in zip(self.RUNTIME.values(),
                                                (np.float32, np.float64, np.float16))}[type_code]
        last = (batch - 1) * stride + (cols - 1) * ld + rows - 1
        nbytes = (last + 1) * dtype.itemsize
        self.check_range(ptr, nbytes, what)
        flat = np.ctypeslib.as_array((ctypes.c_char * nbytes).from_address(ptr)).view(dtype)
        item = dtype.itemsize
        return np.lib.stride_tricks.as_strided(flat, (batch, rows, cols),
                                               (stride * item, item, ld * item))

    def _gemm(self, handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype,
              ldb, strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType, algo):
        c, r = self.CUBLAS, self.RUNTIME
        self.gemm_calls.append(dict(types=(Atype, Btype, Ctype), compute=computeType,
                                    batch=batchCount))
        assert handle == 1000 + self.device_stack[-1], "handle of another device"
        assert all(0 < v <= 2 ** 31 - 1 for v in (m, n, k, lda, ldb, ldc, batchCount))
        allowed = {(r["CUDA_R_16F"], r["CUDA_R_16F"], r["CUDA_R_32F"], c["CUBLAS_COMPUTE_32F"]),
                   (r["CUDA_R_32F"], r["CUDA_R_32F"], r["CUDA_R_32F"], c["CUBLAS_COMPUTE_32F"]),
                   (r["CUDA_R_32F"], r["CUDA_R_32F"], r["CUDA_R_32F"],
                    c["CUBLAS_COMPUTE_32F_FAST_TF32"]),
                   (r["CUDA_R_64F"], r["CUDA_R_64F"], r["CUDA_R_64F"], c["CUBLAS_COMPUTE_64F"])}
        assert (Atype, Btype, Ctype, computeType) in allowed
        a_shape = (m, k) if transa == c["CUBLAS_OP_N"] else (k, m)
        b_shape = (k, n) if transb == c["CUBLAS_OP_N"] else (n, k)
        assert lda >= a_shape[0] and ldb >= b_shape[0] and ldc >= m
        a = self._matrices(A, Atype, *a_shape, lda, strideA, batchCount, "A")
        b = self._matrices(B, Btype, *b_shape, ldb, strideB, batchCount, "B")
        out = self._matrices(C, Ctype, m, n, ldc, strideC, batchCount, "C")
        scalar = np.float64 if computeType == c["CUBLAS_COMPUTE_64F"] else np.float32
        alpha_value, beta_value = (np.ctypeslib.as_array(
            (ctypes.c_char * 8).from_address(p)).view(np.uint8)[:np.dtype(scalar).itemsize]
            .view(scalar)[0] for p in (alpha, beta))
        op_a = a if transa == c["CUBLAS_OP_N"] else a.transpose(0, 2, 1)
        op_b = b if transb == c["CUBLAS_OP_N"] else b.transpose(0, 2, 1)
        product = alpha_value * (op_a.astype(np.float64) @ op_b.astype(np.float64))
        if beta_value != 0:
            product += beta_value * out
        out[...] = product


class FakeDevice:
    def __init__(self, fake, device_id):
        self.fake, self.id = fake, device_id
        self.compute_capability = fake.compute_capability

    def __enter__(self):
        self.fake.device_stack.append(self.id)
        return self

    def __exit__(self, *exc):
        self.fake.device_stack.pop()


class FakeKernel:
    """A launch: checks grid and arguments as a kernel launch on ``device_id`` needs them."""

    def __init__(self, fake, host_kernel, device_id):
        self.fake, self.host_kernel, self.device_id = fake, host_kernel, device_id

    def __call__(self, grid, block, args, **options):
        assert self.fake.device_stack[-1] == self.device_id, "kernel launched on another device"
        assert 1 <= grid[0] <= 2 ** 31 - 1 and 1 <= block[0] <= 1024
        host_args = []
        for arg in args:
            if isinstance(arg, self.fake.ndarray):
                assert arg.device_id == self.device_id
                host_args.append(arg.host)
            elif type(arg) is np.uint64 and arg == 0:
                host_args.append(None)  # 8 zero bytes: a null pointer
            else:
                host_args.append(arg)
        self.host_kernel(*host_args)


@pytest.fixture
def fake_cupy(host_kernels, monkeypatch):
    fake = FakeCupy(host_kernels)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(cuda, "_modules", {})
    monkeypatch.setattr(cuda, "_kernels", {})
    return fake


def run_fake(fake, x, w, b, config, device_id=0, **kwargs):
    """convt_blas.conv_transpose1d on fake CuPy copies of x, w, b; the result on the host."""
    put = fake.asarray
    b_dev = None if b is None else put(b, device_id)
    result = convt_blas.conv_transpose1d(put(x, device_id), put(w, device_id), b_dev,
                                         **conv_kwargs(config), **kwargs)
    assert isinstance(result, fake.ndarray) and result.device_id == device_id
    assert result.flags.c_contiguous
    return result.get()


@pytest.mark.parametrize("dtype", DTYPES)
def test_fake_cupy_path_matches_cpu_path(fake_cupy, dtype):
    rng = np.random.default_rng(17)
    for i, config in enumerate(SPECIAL + random_configs(100 + np.dtype(dtype).num, 30)):
        x, w, b = operands(config, dtype, rng, with_bias=i % 4 != 1)
        got = run_fake(fake_cupy, x, w, b, config)
        assert got.dtype == dtype
        assert_close(got, convt_blas.conv_transpose1d(x, w, b, **conv_kwargs(config)), dtype)


def test_fake_cupy_unbatched_out_and_chunks(fake_cupy, monkeypatch):
    rng = np.random.default_rng(23)
    config = (7, 6, 3, 5, 11, 3, 2, 1, 2, 2)
    x, w, b = operands(config, np.float32, rng)
    expected = convt_blas.conv_transpose1d(x, w, b, **conv_kwargs(config))
    # the column buffer holds 3 batch elements: chunks of 3, 3, 1
    sample_bytes = 6 * 5 * 11 * 4
    monkeypatch.setattr(cuda, "_COLUMN_BUDGET_BYTES", 3 * sample_bytes + 1)
    assert_close(run_fake(fake_cupy, x, w, b, config), expected)
    monkeypatch.setattr(cuda, "_COLUMN_BUDGET_BYTES", 1)  # one element at a time
    assert_close(run_fake(fake_cupy, x, w, b, config), expected)

    out = fake_cupy.asarray(np.zeros(expected.shape, np.float32))
    returned = convt_blas.conv_transpose1d(fake_cupy.asarray(x), fake_cupy.asarray(w),
                                           fake_cupy.asarray(b), **conv_kwargs(config), out=out)
    assert returned is out
    assert_close(out.get(), expected)

    single = run_fake(fake_cupy, x[2], w, b, config)  # unbatched (C_in, L_in)
    assert_close(single, expected[2])
    empty = run_fake(fake_cupy, x[:0], w, b, config)
    assert empty.shape == (0, 6, expected.shape[2])


def test_fake_cupy_index_width_and_size_limits(fake_cupy, monkeypatch):
    rng = np.random.default_rng(19)
    config = (3, 4, 2, 5, 9, 3, 1, 2, 2, 2)
    x, w, b = operands(config, np.float64, rng)
    expected = convt_blas.conv_transpose1d(x, w, b, **conv_kwargs(config))
    assert_close(run_fake(fake_cupy, x, w, b, config), expected)
    monkeypatch.setattr(cuda, "_INDEX32_LIMIT", 3 * 4 * 17)  # the output no longer fits
    assert_close(run_fake(fake_cupy, x, w, b, config), expected)
    assert fake_cupy.functions_loaded == ["convt_blas_gather_f64_i32", "convt_blas_gather_f64_i64"]

    put = fake_cupy.asarray
    with pytest.raises(ValueError, match="stride = 2147483648 exceeds the CUDA path's 32-bit"):
        convt_blas.conv_transpose1d(put(x[:, :, :1]), put(w), stride=2 ** 31)


def test_fake_cupy_gemm_plan(fake_cupy):
    """Groups <= batch: one batched GEMM per group; otherwise one per batch element."""
    rng = np.random.default_rng(29)
    for n, groups, calls, batch in ((4, 2, 2, 4), (1, 3, 1, 3), (2, 3, 2, 3), (5, 1, 1, 5)):
        config = (n, 2 * groups, 2, 3, 6, 2, 1, 0, groups, 1)
        x, w, b = operands(config, np.float64, rng)
        fake_cupy.gemm_calls.clear()
        assert_close(run_fake(fake_cupy, x, w, b, config),
                     convt_blas.conv_transpose1d(x, w, b, **conv_kwargs(config)))
        assert [c["batch"] for c in fake_cupy.gemm_calls] == [batch] * calls


@pytest.mark.parametrize("dtype, capability, allow, expected", [
    (np.float32, "80", True, "CUBLAS_COMPUTE_32F_FAST_TF32"),
    (np.float32, "90", False, "CUBLAS_COMPUTE_32F"),
    (np.float32, "75", True, "CUBLAS_COMPUTE_32F"),  # no TF32 before Ampere
    (np.float64, "90", True, "CUBLAS_COMPUTE_64F"),
    (np.float16, "90", True, "CUBLAS_COMPUTE_32F"),
])
def test_fake_cupy_tf32_switch(fake_cupy, monkeypatch, dtype, capability, allow, expected):
    monkeypatch.setattr(cuda, "allow_tf32", allow)
    fake_cupy.compute_capability = capability
    config = (2, 4, 3, 4, 5, 2, 1, 0, 1, 1)
    x, w, b = operands(config, dtype, np.random.default_rng(1))
    run_fake(fake_cupy, x, w, b, config)
    assert {c["compute"] for c in fake_cupy.gemm_calls} == {FakeCupy.CUBLAS[expected]}
    if dtype == np.float16:  # float16 operands, float32 columns
        assert {c["types"] for c in fake_cupy.gemm_calls} == {(2, 2, 0)}


def test_fake_cupy_compiles_once_per_device(fake_cupy):
    config = (1, 2, 2, 3, 4, 2, 0, 0, 1, 1)
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float32, np.float64):
        run_fake(fake_cupy, *operands(config, dtype, rng), config)
    run_fake(fake_cupy, *operands(config, np.float32, rng), config, device_id=1)
    assert fake_cupy.modules_built == [0, 1]


BAD_ARGUMENTS = [
    # (x shape, w shape, bias shape, kwargs)
    ((2, 4, 5), (3, 2, 3), None, {}),
    ((2, 4, 5), (4, 2, 3), (3,), {}),
    ((2, 4, 5), (4, 2, 3), None, dict(groups=3)),
    ((2, 4, 5), (4, 2, 3), None, dict(stride=0)),
    ((2, 4, 5), (4, 2, 3), None, dict(padding=-1)),
    ((2, 4, 5), (4, 2, 3), None, dict(output_padding=2, stride=2)),
    ((2, 4, 5), (4, 2, 3), None, dict(dilation=0)),
    ((2, 4, 5), (4, 2, 3), None, dict(padding=9)),
    ((4, 5), (4, 2, 3), None, dict(stride=(1, 2))),
    ((4, 5), (4, 2, 3), None, dict(stride=1.5)),
    ((1, 2, 4, 5), (4, 2, 3), None, {}),
    ((2, 4, 5), (4, 2), None, {}),
    ((2, 4, 0), (4, 2, 3), None, {}),
]


def _error(call):
    try:
        call()
    except (TypeError, ValueError) as exc:
        return type(exc), str(exc)
    raise AssertionError("no error raised")


@pytest.mark.parametrize("x_shape, w_shape, b_shape, kwargs", BAD_ARGUMENTS)
def test_fake_cupy_errors_are_the_cpu_paths(fake_cupy, x_shape, w_shape, b_shape, kwargs):
    x, w = np.ones(x_shape, np.float32), np.ones(w_shape, np.float32)
    b = None if b_shape is None else np.ones(b_shape, np.float32)
    put = fake_cupy.asarray
    cpu = _error(lambda: convt_blas.conv_transpose1d(x, w, b, **kwargs))
    gpu = _error(lambda: convt_blas.conv_transpose1d(
        put(x), put(w), None if b is None else put(b), **kwargs))
    assert gpu == cpu


def test_fake_cupy_operand_errors(fake_cupy):
    put = fake_cupy.asarray
    x, w = np.ones((2, 4, 5), np.float32), np.ones((4, 2, 3), np.float32)
    b = np.ones(2, np.float32)
    # dtype rules shared with the CPU path, same messages
    for args in ((x, w.astype(np.float64), None), (x, w, b.astype(np.float16)),
                 (x.astype(np.int32), w.astype(np.int32), None)):
        cpu = _error(lambda: convt_blas.conv_transpose1d(*args))
        gpu = _error(lambda: convt_blas.conv_transpose1d(
            *(None if a is None else put(a) for a in args)))
        assert gpu == cpu
    with pytest.raises(TypeError, match="CUDA path supports float16, float32 and float64"):
        convt_blas.conv_transpose1d(put(x.astype(np.complex64)), put(w.astype(np.complex64)))
    with pytest.raises(TypeError, match="weight must be a CuPy array"):
        convt_blas.conv_transpose1d(put(x), w)
    with pytest.raises(TypeError, match="bias must be a CuPy array"):
        convt_blas.conv_transpose1d(put(x), put(w), b)
    with pytest.raises(ValueError, match="weight is on CUDA device 1, input on device 0"):
        convt_blas.conv_transpose1d(put(x), put(w, device_id=1))
    with pytest.raises(ValueError, match="out has shape"):
        convt_blas.conv_transpose1d(put(x), put(w), out=put(np.zeros((2, 2, 6), np.float32)))
    with pytest.raises(ValueError, match="out has dtype"):
        convt_blas.conv_transpose1d(put(x), put(w), out=put(np.zeros((2, 2, 7))))
    transposed = fake_cupy.ndarray(np.zeros((2, 7, 2), np.float32).transpose(0, 2, 1), 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        convt_blas.conv_transpose1d(put(x), put(w), out=transposed)
    memory = np.zeros(40 + 28, np.float32)
    x_in_memory = fake_cupy.ndarray(memory[:40].reshape(2, 4, 5), 0)
    out_in_memory = fake_cupy.ndarray(memory[12:40].reshape(2, 2, 7), 0)
    with pytest.raises(ValueError, match="out overlaps input"):
        convt_blas.conv_transpose1d(x_in_memory, put(w), out=out_in_memory)


# ---------------------------------------------------------------- on a GPU

@pytest.fixture(scope="module")
def gpu_cupy():
    try:
        import cupy
    except ImportError as exc:
        pytest.skip(f"CuPy is not installed: {exc}")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy without a driver or device raises its own errors
        pytest.skip(f"no CUDA device: {exc}")
    if count < 1:
        pytest.skip("no CUDA device")
    return cupy


@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_matches_cpu_path(gpu_cupy, monkeypatch, dtype):
    monkeypatch.setattr(cuda, "allow_tf32", False)
    rng = np.random.default_rng(31)
    for i, config in enumerate(SPECIAL + random_configs(200 + np.dtype(dtype).num, 30)):
        x, w, b = operands(config, dtype, rng, with_bias=i % 3 != 2)
        on_gpu = [None if a is None else gpu_cupy.asarray(a) for a in (x, w, b)]
        got = convt_blas.conv_transpose1d(*on_gpu, **conv_kwargs(config))
        assert isinstance(got, gpu_cupy.ndarray) and got.dtype == dtype
        assert_close(got.get(), convt_blas.conv_transpose1d(x, w, b, **conv_kwargs(config)), dtype)


def test_gpu_is_deterministic_and_tf32_close(gpu_cupy, monkeypatch):
    rng = np.random.default_rng(37)
    x = gpu_cupy.asarray(rng.standard_normal((4, 256, 300)).astype(np.float32))
    w = gpu_cupy.asarray(rng.standard_normal((256, 128, 16)).astype(np.float32))
    b = gpu_cupy.asarray(rng.standard_normal(128).astype(np.float32))
    kwargs = dict(stride=8, padding=4)
    expected = convt_blas.conv_transpose1d(x.get(), w.get(), b.get(), **kwargs)
    for allow, rtol in ((False, 1e-5), (True, 5e-3)):
        monkeypatch.setattr(cuda, "allow_tf32", allow)
        runs = [convt_blas.conv_transpose1d(x, w, b, **kwargs).get() for _ in range(3)]
        for run in runs[1:]:
            np.testing.assert_array_equal(run, runs[0])  # bitwise, run to run
        scale = float(np.abs(expected).max())
        assert np.abs(runs[0] - expected).max() <= rtol * scale


def test_gpu_matches_torch_cuda(gpu_cupy, monkeypatch):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    monkeypatch.setattr(cuda, "allow_tf32", False)
    rng = np.random.default_rng(41)
    for config in SPECIAL + random_configs(300, 20):
        x, w, b = operands(config, np.float32, rng)
        got = convt_blas.conv_transpose1d(*(gpu_cupy.asarray(a) for a in (x, w, b)),
                                          **conv_kwargs(config)).get()
        with torch.backends.cudnn.flags(allow_tf32=False):
            expected = torch.nn.functional.conv_transpose1d(
                *(torch.from_numpy(a).cuda() for a in (x, w, b)), **conv_kwargs(config))
        assert_close(got, expected.cpu().numpy())


def test_gpu_rejects_host_weight(gpu_cupy):
    x = gpu_cupy.ones((1, 2, 5), np.float32)
    with pytest.raises(TypeError, match="weight must be a CuPy array"):
        convt_blas.conv_transpose1d(x, np.ones((2, 3, 4), np.float32))


def test_fake_cupy_module_layer(fake_cupy):
    """The ConvTranspose1d module takes a CuPy input and computes on its device."""
    layer = convt_blas.ConvTranspose1d(6, 4, 5, stride=3, padding=1, groups=2, rng=3)
    x = np.random.default_rng(5).standard_normal((2, 6, 9)).astype(np.float32)
    for device_id in (0, 1):
        result = layer(fake_cupy.asarray(x, device_id), output_size=[27])
        assert isinstance(result, fake_cupy.ndarray) and result.device_id == device_id
        assert_close(result.get(), layer(x, output_size=[27]), np.float32)
