"""Tensors in, tensors out, without copies.

Any array that speaks one of the exchange protocols is read in place:

* PyTorch tensors (``data_ptr()``, strides, device; the current CUDA stream),
* NumPy arrays (the array interface's data pointer),
* ``__cuda_array_interface__`` (CuPy, Numba, ...; its stream, or CuPy's
  current stream),
* ``__dlpack__`` (JAX, CuPy, NumPy, TensorFlow, ...): the capsule's
  DLManagedTensor is read with ctypes and kept alive for the call.

Outputs, per-row parameter arrays and the workspace are made by the same
library as the logits, on the same device (``Lib``), so what comes back is
the same kind of tensor that went in.
"""

import ctypes
from ctypes import POINTER, Structure, c_int32, c_int64, c_uint8, c_uint16, c_uint32, c_uint64, c_void_p

CPU = "cpu"
CUDA = "cuda"

# ------------------------------------------------------------------ DLPack
_kDLCPU, _kDLCUDA, _kDLCUDAHost, _kDLCUDAManaged = 1, 2, 3, 13
_DL_INT, _DL_UINT, _DL_FLOAT, _DL_BFLOAT, _DL_BOOL = 0, 1, 2, 4, 6
_DL_READ_ONLY = 1
_DL_IS_COPIED = 2


class _DLDevice(Structure):
    _fields_ = [("device_type", c_int32), ("device_id", c_int32)]


class _DLDataType(Structure):
    _fields_ = [("code", c_uint8), ("bits", c_uint8), ("lanes", c_uint16)]


class _DLTensor(Structure):
    _fields_ = [("data", c_void_p), ("device", _DLDevice), ("ndim", c_int32),
                ("dtype", _DLDataType), ("shape", POINTER(c_int64)),
                ("strides", POINTER(c_int64)), ("byte_offset", c_uint64)]


class _DLManagedTensor(Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", c_void_p), ("deleter", c_void_p)]


class _DLPackVersion(Structure):
    _fields_ = [("major", c_uint32), ("minor", c_uint32)]


class _DLManagedTensorVersioned(Structure):
    _fields_ = [("version", _DLPackVersion), ("manager_ctx", c_void_p), ("deleter", c_void_p),
                ("flags", c_uint64), ("dl_tensor", _DLTensor)]


_capsule_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_get_pointer.restype = c_void_p
_capsule_get_name = ctypes.pythonapi.PyCapsule_GetName
_capsule_get_name.argtypes = [ctypes.py_object]
_capsule_get_name.restype = ctypes.c_char_p

_DL_DTYPES = {
    (_DL_FLOAT, 32): "float32", (_DL_FLOAT, 16): "float16", (_DL_FLOAT, 64): "float64",
    (_DL_BFLOAT, 16): "bfloat16",
    (_DL_INT, 8): "int8", (_DL_INT, 16): "int16", (_DL_INT, 32): "int32", (_DL_INT, 64): "int64",
    (_DL_UINT, 8): "uint8", (_DL_UINT, 16): "uint16", (_DL_UINT, 32): "uint32",
    (_DL_UINT, 64): "uint64", (_DL_BOOL, 8): "bool",
}
ITEMSIZE = {"float32": 4, "float16": 2, "float64": 8, "bfloat16": 2, "int8": 1, "int16": 2,
            "int32": 4, "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1}


class View:
    """Where an array's elements are: data pointer, shape, strides (in
    elements), dtype name and device. ``keep`` holds whatever must stay alive
    while the pointer is used (the array, a DLPack capsule)."""

    __slots__ = ("ptr", "shape", "strides", "dtype", "device", "device_id", "keep", "read_only")

    def __init__(self, ptr, shape, strides, dtype, device, device_id, keep, read_only=False):
        self.ptr = int(ptr or 0)
        self.shape = tuple(int(s) for s in shape)
        if strides is None:
            strides, step = [], 1
            for s in reversed(self.shape):
                strides.append(step)
                step *= max(s, 1)
            strides = tuple(reversed(strides))
        self.strides = tuple(int(s) for s in strides)
        self.dtype = dtype
        self.device = device
        self.device_id = int(device_id)
        self.keep = keep
        self.read_only = read_only

    @property
    def ndim(self):
        return len(self.shape)

    def is_contiguous(self):
        step = 1
        for size, stride in zip(reversed(self.shape), reversed(self.strides)):
            if size != 1 and stride != step:
                return False
            step *= size
        return True


def _module(x):
    return type(x).__module__.split(".", 1)[0]


def _is_torch(x):
    return _module(x) == "torch" and hasattr(x, "data_ptr")


def _is_numpy(x):
    return _module(x) == "numpy" and hasattr(x, "__array_interface__")


def _is_cupy(x):
    return _module(x) == "cupy" and hasattr(x, "__cuda_array_interface__")


def _typestr_dtype(typestr):
    kind, size = typestr[1], int(typestr[2:])
    name = {"f": "float", "i": "int", "u": "uint", "b": "bool"}.get(kind)
    if name is None:
        raise TypeError(f"kiln: unsupported element type {typestr!r}")
    return "bool" if name == "bool" else f"{name}{8 * size}"


def _from_interface(iface, device, device_id, keep):
    typestr = iface["typestr"]
    if typestr[0] not in "<|=":
        raise TypeError("kiln: big-endian arrays are not supported")
    if typestr == "<V2":  # bfloat16 as ml_dtypes exposes it to NumPy
        dtype = "bfloat16"
    else:
        dtype = _typestr_dtype(typestr)
    ptr, read_only = iface["data"]
    item = ITEMSIZE[dtype]
    strides = iface.get("strides")
    if strides is not None:
        if any(s % item for s in strides):
            raise ValueError("kiln: array strides are not a multiple of the element size")
        strides = tuple(s // item for s in strides)
    return View(ptr, iface["shape"], strides, dtype, device, device_id, keep, read_only)


def _from_dlpack_capsule(capsule, keep):
    name = _capsule_get_name(capsule)
    if name == b"dltensor_versioned":
        m = _DLManagedTensorVersioned.from_address(_capsule_get_pointer(capsule, name))
        # A copy is as good as the array for reading, but must not be written.
        t, read_only = m.dl_tensor, bool(m.flags & (_DL_READ_ONLY | _DL_IS_COPIED))
    elif name == b"dltensor":
        m = _DLManagedTensor.from_address(_capsule_get_pointer(capsule, name))
        t, read_only = m.dl_tensor, False
    else:
        raise TypeError(f"kiln: __dlpack__ returned a capsule named {name!r}")
    dtype = _DL_DTYPES.get((t.dtype.code, t.dtype.bits))
    if dtype is None or t.dtype.lanes != 1:
        raise TypeError(f"kiln: unsupported DLPack dtype (code {t.dtype.code}, "
                        f"bits {t.dtype.bits}, lanes {t.dtype.lanes})")
    dev = t.device.device_type
    if dev in (_kDLCPU, _kDLCUDAHost):
        device = CPU
    elif dev in (_kDLCUDA, _kDLCUDAManaged):
        device = CUDA
    else:
        raise TypeError(f"kiln: DLPack device type {dev} is neither CPU nor CUDA")
    shape = [t.shape[i] for i in range(t.ndim)]
    strides = [t.strides[i] for i in range(t.ndim)] if t.strides else None
    ptr = (t.data or 0) + t.byte_offset
    # The capsule's destructor calls the producer's deleter once the capsule
    # goes away; holding it (with the array) keeps the memory alive.
    return View(ptr, shape, strides, dtype, device, t.device.device_id, (keep, capsule),
                read_only)


def _dlpack_device(x):
    dev_type, dev_id = x.__dlpack_device__()
    dev_type = int(dev_type)
    if dev_type in (_kDLCPU, _kDLCUDAHost):
        return CPU, int(dev_id)
    if dev_type in (_kDLCUDA, _kDLCUDAManaged):
        return CUDA, int(dev_id)
    raise TypeError(f"kiln: DLPack device type {dev_type} is neither CPU nor CUDA")


def _dlpack_stream(stream):
    # DLPack's stream argument for CUDA: 1 is the legacy default stream
    # (kiln's NULL); any other value is the stream handle itself.
    return 1 if stream == 0 else stream


def view(x, stream=None):
    """A View of array `x`, read in place. `stream` is the CUDA stream kiln
    will run on, for DLPack producers to order their work before it."""
    if _is_torch(x):
        dev = x.device
        dtype = str(x.dtype).replace("torch.", "")
        if dtype not in ITEMSIZE:
            raise TypeError(f"kiln: unsupported tensor dtype {x.dtype}")
        return View(x.data_ptr(), x.shape, x.stride(), dtype,
                    CUDA if dev.type == "cuda" else CPU, dev.index or 0, x)
    if _is_numpy(x):
        return _from_interface(x.__array_interface__, CPU, 0, x)
    if hasattr(x, "__cuda_array_interface__"):
        iface = x.__cuda_array_interface__
        dev_id = 0
        if hasattr(x, "__dlpack_device__"):
            dev_id = _dlpack_device(x)[1]
        elif hasattr(x, "device") and hasattr(x.device, "id"):
            dev_id = x.device.id
        return _from_interface(iface, CUDA, dev_id, x)
    if hasattr(x, "__dlpack__"):
        device, _ = _dlpack_device(x) if hasattr(x, "__dlpack_device__") else (CPU, 0)
        kw = {"stream": _dlpack_stream(stream or 0)} if device == CUDA else {}
        try:
            capsule = x.__dlpack__(max_version=(1, 0), **kw)
        except TypeError:  # a producer that predates DLPack 1.0
            capsule = x.__dlpack__(**kw)
        return _from_dlpack_capsule(capsule, x)
    if hasattr(x, "__array_interface__"):
        return _from_interface(x.__array_interface__, CPU, 0, x)
    raise TypeError(f"kiln: {type(x).__name__} is not a tensor: it has no __dlpack__, "
                    "__cuda_array_interface__ or __array_interface__")


def is_tensor(x):
    return (_is_torch(x) or _is_numpy(x) or hasattr(x, "__cuda_array_interface__")
            or hasattr(x, "__dlpack__") or hasattr(x, "__array_interface__"))


# ----------------------------------------------------- the logits' library
class Lib:
    """Makes arrays of the logits' kind on the logits' device, and names the
    CUDA stream kiln runs on (the library's current stream)."""

    name = "?"

    def empty(self, shape, dtype):
        raise NotImplementedError

    def asarray(self, value, dtype):
        """`value` (a tensor, a list, a NumPy array) as a contiguous array of
        `dtype` on the device; no copy when it already is one."""
        raise NotImplementedError

    def ptr(self, arr):
        return view(arr).ptr

    def stream(self):
        return 0

    def cache_key(self):
        return self.name

    def after_call(self, stream):
        """Called once kiln has enqueued its work on `stream`."""


def _sync_stream(stream):
    """Waits for `stream` with the CUDA driver API (libcuda is there whenever
    a CUDA device is in use). For libraries that cannot order their own
    work after a stream of ours."""
    global _cuda_driver
    if _cuda_driver is None:
        _cuda_driver = ctypes.CDLL("libcuda.so.1")
        _cuda_driver.cuStreamSynchronize.argtypes = [c_void_p]
        _cuda_driver.cuStreamSynchronize.restype = ctypes.c_int
    err = _cuda_driver.cuStreamSynchronize(stream or None)
    if err:
        raise RuntimeError(f"kiln: cuStreamSynchronize failed with CUresult {err}")


_cuda_driver = None


class NumpyLib(Lib):
    name = "numpy"

    def __init__(self):
        import numpy
        self.np = numpy

    def _dtype(self, dtype):
        if dtype == "bfloat16":
            raise TypeError("kiln: NumPy has no bfloat16")
        return self.np.dtype(dtype)

    def empty(self, shape, dtype):
        return self.np.empty(shape, self._dtype(dtype))

    def asarray(self, value, dtype):
        if not _is_numpy(value) and is_tensor(value):
            v = view(value)
            if v.device != CPU:
                raise ValueError("kiln: a parameter is on a CUDA device but the logits are "
                                 "on the CPU")
            if hasattr(value, "__dlpack__") and not hasattr(value, "__array__"):
                value = self.np.from_dlpack(value)
        return self.np.ascontiguousarray(self.np.asarray(value), dtype=self._dtype(dtype))

    def ptr(self, arr):
        return arr.__array_interface__["data"][0]


class TorchLib(Lib):
    name = "torch"

    def __init__(self, device):
        import torch
        self.torch = torch
        self.device = device

    def _dtype(self, dtype):
        return getattr(self.torch, dtype)

    def empty(self, shape, dtype):
        return self.torch.empty(shape, dtype=self._dtype(dtype), device=self.device)

    def asarray(self, value, dtype):
        torch = self.torch
        import numpy
        if dtype == "uint64":
            # 64-bit seeds and offsets travel as int64 (the same bits): older
            # PyTorch has no uint64, and kiln reads the bytes either way.
            if isinstance(value, torch.Tensor):
                t = value.to(device=self.device)
                if t.dtype not in (torch.int64, getattr(torch, "uint64", torch.int64)):
                    t = t.to(torch.int64)
            else:
                a = numpy.asarray(value)
                if is_tensor(value) and not isinstance(value, (list, tuple)) and \
                        view(value).device != CPU:
                    a = numpy.asarray(torch.from_dlpack(value).cpu())
                a = a.astype(numpy.uint64).view(numpy.int64)
                t = torch.as_tensor(a, device=self.device)
            return t.contiguous()
        want = self._dtype(dtype)
        if isinstance(value, torch.Tensor):
            t = value.to(device=self.device)
        elif is_tensor(value) and not isinstance(value, (list, tuple)):
            t = torch.from_dlpack(value).to(device=self.device)
        else:
            t = torch.as_tensor(numpy.asarray(value), device=self.device)
        return t.to(want).contiguous()

    def ptr(self, arr):
        return arr.data_ptr()

    def stream(self):
        if self.device.type != "cuda":
            return 0
        return self.torch.cuda.current_stream(self.device).cuda_stream

    def cache_key(self):
        return ("torch", str(self.device))


class CupyLib(Lib):
    name = "cupy"

    def __init__(self, device_id):
        import cupy
        self.cupy = cupy
        self.device_id = device_id

    def empty(self, shape, dtype):
        with self.cupy.cuda.Device(self.device_id):
            return self.cupy.empty(shape, dtype=dtype)

    def asarray(self, value, dtype):
        with self.cupy.cuda.Device(self.device_id):
            return self.cupy.ascontiguousarray(self.cupy.asarray(value), dtype=dtype)

    def ptr(self, arr):
        return arr.data.ptr

    def stream(self):
        return self.cupy.cuda.get_current_stream().ptr

    def cache_key(self):
        return ("cupy", self.device_id)


class ArrayApiLib(Lib):
    """Any library with the array API (`__array_namespace__`): JAX, ..."""

    def __init__(self, x, device, stream):
        self.xp = x.__array_namespace__()
        self.name = getattr(self.xp, "__name__", "array-api")
        self.dev = getattr(x, "device", None)
        self.kind = device
        self._stream = stream

    def _dtype(self, dtype):
        return getattr(self.xp, dtype)

    def _device_kw(self):
        return {} if self.dev is None else {"device": self.dev}

    def empty(self, shape, dtype):
        arr = self.xp.zeros(shape, dtype=self._dtype(dtype), **self._device_kw())
        ready = getattr(arr, "block_until_ready", None)
        if ready:  # JAX computes asynchronously: the buffer must exist first
            ready()
        return arr

    def asarray(self, value, dtype):
        if is_tensor(value) and not hasattr(value, "__array_namespace__"):
            import numpy
            value = numpy.asarray(value)
        arr = self.xp.asarray(value, dtype=self._dtype(dtype), **self._device_kw())
        ready = getattr(arr, "block_until_ready", None)
        if ready:
            ready()
        return arr

    def ptr(self, arr):
        v = view(arr, self._stream)
        if v.read_only:
            raise TypeError(f"kiln: {self.name} exported a read-only or copied array; "
                            "kiln cannot write its results into it")
        return v.ptr

    def stream(self):
        return self._stream

    def cache_key(self):
        return (self.name, str(self.dev))

    def after_call(self, stream):
        # JAX and the like cannot be told that their arrays are being
        # written on a CUDA stream: the call is made synchronous for them.
        if self.kind == CUDA:
            _sync_stream(stream)


def lib_for(x, v):
    """The Lib that makes arrays like `x` (whose View is `v`)."""
    if _is_torch(x):
        return TorchLib(x.device)
    if _is_numpy(x):
        return NumpyLib()
    if _is_cupy(x):
        return CupyLib(v.device_id)
    if hasattr(x, "__array_namespace__"):
        stream = 0
        if v.device == CUDA and hasattr(x, "__cuda_array_interface__"):
            stream = x.__cuda_array_interface__.get("stream") or 0
        return ArrayApiLib(x, v.device, stream)
    if v.device == CPU:
        return NumpyLib()
    raise TypeError(f"kiln: cannot allocate CUDA outputs like a {type(x).__name__}: use "
                    "PyTorch, CuPy, or an array-API library (JAX)")

