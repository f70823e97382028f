"""kiln.sample and the serving-stack-shaped functions over it.

A sampler (kiln_sampler) and its workspace are cached per host thread (kiln
asks for one sampler per thread), per backend, device and options; the
limits (rows, vocabulary, draws, history) only grow, by powers of two, so a
serving loop creates a handful of samplers and then none. Workspaces are
made by the logits' library and kept per CUDA stream, so two streams never
share one while a call is in flight.
"""

import ctypes
import operator
import random
import threading
from typing import Any, NamedTuple, Optional

from . import _capi
from ._capi import KilnError, check, lib
from ._tensors import CPU, CUDA, is_tensor, lib_for, view

_DTYPES = {"float32": _capi.DTYPE_F32, "float16": _capi.DTYPE_F16, "bfloat16": _capi.DTYPE_BF16}
_ALGORITHMS = {"auto": _capi.ALGORITHM_AUTO, "sort": _capi.ALGORITHM_SORT,
               "select": _capi.ALGORITHM_SELECT}
_U64 = (1 << 64) - 1


class SampleResult(NamedTuple):
    """What kiln.sample returns; outputs not asked for are None. Arrays are of
    the logits' kind and device. With 2-D logits [B, V]: tokens, logprobs and
    raw_logprobs are [B] (num_samples=None) or [B, n]; probs [B, V];
    kept_counts [B] int32; valid [B] uint8. With 1-D logits [V] the leading B
    is dropped."""
    tokens: Any
    logprobs: Optional[Any] = None
    raw_logprobs: Optional[Any] = None
    probs: Optional[Any] = None
    kept_counts: Optional[Any] = None
    valid: Optional[Any] = None


# ------------------------------------------------------------ the cache
def _grow(need, have):
    if have >= need:
        return have
    size = 1
    while size < need:
        size *= 2
    return size


class _Sampler:
    """One kiln_sampler with its limits, and a workspace per stream."""

    def __init__(self, config):
        handle = ctypes.c_void_p()
        check(lib.kiln_sampler_create(ctypes.byref(config), ctypes.byref(handle)))
        self.handle = handle
        self.limits = (config.max_batch, config.max_vocab, config.max_samples, config.max_history)
        size = ctypes.c_size_t()
        check(lib.kiln_sampler_workspace_size(handle, ctypes.byref(size)))
        self.workspace_size = size.value
        self.workspaces = {}  # stream -> (array, pointer)

    def workspace(self, arrays, stream):
        ws = self.workspaces.get(stream)
        if ws is None:
            # kiln aligns inside the workspace itself (the size query adds the slack).
            arr = arrays.empty((max(self.workspace_size, 1),), "uint8")
            ws = self.workspaces[stream] = (arr, arrays.ptr(arr))
        return ws[1]

    def __del__(self):
        try:
            lib.kiln_sampler_destroy(self.handle)
        except Exception:  # interpreter shutdown
            pass


_local = threading.local()


def _cache():
    c = getattr(_local, "samplers", None)
    if c is None:
        c = _local.samplers = {}
        _local.retired = []
    return c


def clear_cache():
    """Drops this thread's cached samplers and workspaces. Work kiln enqueued
    on a CUDA stream must be complete first (synchronise the stream)."""
    _cache().clear()
    _local.retired = []


def _sampler(backend, device, arrays, limits, num_threads, algorithm):
    key = (backend, device, num_threads, algorithm, arrays.cache_key())
    cache = _cache()
    s = cache.get(key)
    if s is None or any(n > h for n, h in zip(limits, s.limits)):
        have = s.limits if s is not None else (0, 0, 0, 0)
        grown = [_grow(n, h) for n, h in zip(limits, have)]
        if limits[1] <= _capi.MAX_VOCAB_SIZE:  # past it, let kiln name the error
            grown[1] = min(grown[1], _capi.MAX_VOCAB_SIZE)
        cfg = _capi.Config(backend=backend, device=device, max_batch=grown[0],
                           max_vocab=grown[1], max_samples=grown[2], max_history=grown[3],
                           num_threads=num_threads, algorithm=algorithm)
        new = _Sampler(cfg)
        if s is not None:
            # A call in flight on a stream may still use the old workspace
            # (and, by kiln's rule, the old sampler): keep both alive.
            _local.retired.append(s)
        cache[key] = s = new
    return s


# ------------------------------------------------------------ parameters
def _is_scalar(v):
    if isinstance(v, (bool, int, float)):
        return True
    shape = getattr(v, "shape", None)
    return shape is not None and tuple(shape) == () and not isinstance(v, (list, tuple))


def _scalar(v):
    return v.item() if hasattr(v, "item") else v



# ------------------------------------------------------ integer inputs
# Every integer a caller passes is checked against the range of the C type it
# becomes (or kiln.h's range, where that is wider than "fits") before any
# conversion, so nothing wraps silently; arrays and scalars share one rule.
_I32 = (-2**31, 2**31 - 1)
_I64 = (-2**63, 2**63 - 1)
_SEED = (-2**63, _U64)  # negative int64 values are the same 64 bits (-1 is 2**64 - 1)


def _as_int(x, name):
    """x (a Python or NumPy integer, a bool, or an integral float) as an int."""
    if isinstance(x, float) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") == "f"):
        f = float(x)
        if not f.is_integer():
            raise ValueError(f"kiln: {name} = {f!r} is not an integer")
        return int(f)
    try:
        return operator.index(x)
    except TypeError:
        raise ValueError(f"kiln: {name} = {x!r} is not an integer") from None


def _check_int(x, name, bounds, clamp=False):
    """One integer input: in [lo, hi], or (clamp) brought into it, for inputs
    whose meaning does not change past the bound (top_k beyond int32 disables
    top-k as k >= V does)."""
    v = _as_int(x, name)
    lo, hi = bounds
    if lo <= v <= hi:
        return v
    if clamp:
        return max(min(v, hi), lo)
    raise ValueError(f"kiln: {name} = {v} is outside [{lo}, {hi}]")


def _host_values(value):
    """A host or device array, list or tuple as a flat list of Python numbers
    (a host copy for device tensors: only on paths that must look at values)."""
    import numpy
    if isinstance(value, (list, tuple)):
        return list(value)
    if is_tensor(value) and view(value).device != CPU:
        if hasattr(value, "cpu"):
            value = value.cpu()
        elif hasattr(value, "get"):
            value = value.get()
    elif is_tensor(value) and hasattr(value, "__dlpack__") and not hasattr(value, "__array__"):
        value = numpy.from_dlpack(value)
    return numpy.asarray(value).reshape(-1).tolist()


def _check_ints(value, name, bounds, clamp=False, index=None):
    """An integer array input, checked entry by entry like a scalar (the
    first bad entry named, e.g. "seed[3] = ..."). Returns `value` itself when
    its element type cannot hold a value outside bounds, else a list of
    checked Python ints."""
    dt = view(value).dtype if is_tensor(value) and not isinstance(value, (list, tuple)) else None
    if dt in _FITS.get(bounds, ()):
        return value
    label = index or (lambda i: f"{name}[{i}]")
    return [_check_int(x, label(i), bounds, clamp) for i, x in enumerate(_host_values(value))]


_FITS = {_I32: ("int8", "int16", "int32", "uint8", "uint16", "bool"),
         _I64: ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "bool"),
         _SEED: ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "bool")}


class _Call:
    """Collects the arrays one kiln call uses, so they stay alive until it
    returns, and turns parameters into backend memory of the right type."""

    def __init__(self, arrays, device, rows, stream):
        self.arrays = arrays
        self.device = device
        self.rows = rows
        self.stream = stream
        self.keep = []

    def array(self, value, dtype, name, length=None):
        """Pointer to `value` as a contiguous array of `dtype` in backend
        memory (no copy when it already is one); seeds and offsets accept
        int64 arrays too, read as the same bits."""
        length = self.rows if length is None else length
        if is_tensor(value):
            v = view(value, self.stream)
            ok = (v.device == self.device and v.is_contiguous() and v.ndim == 1
                  and (v.dtype == dtype or (dtype == "uint64" and v.dtype == "int64")))
            if ok:
                if v.shape[0] != length:
                    raise ValueError(f"kiln: {name} has {v.shape[0]} entries, expected {length}")
                self.keep.append(v)
                return v.ptr
        arr = self.arrays.asarray(value, dtype)
        v = view(arr, self.stream)
        if v.ndim != 1 or v.shape[0] != length:
            raise ValueError(f"kiln: {name} has shape {v.shape}, expected ({length},)")
        self.keep.append((arr, v))
        return v.ptr

    def param(self, params, name, value, dtype, convert, bounds=None, clamp=False):
        if value is None:
            return
        if _is_scalar(value):
            if bounds is not None:
                value = _check_int(_scalar(value), name, bounds, clamp)
            value = convert(_scalar(value))
            setattr(params, name + "_all", value)
        else:
            if bounds is not None:
                value = self.ints(value, dtype, name, bounds, clamp)
            setattr(params, name, self.array(value, dtype, name))

    def ints(self, value, dtype, name, bounds, clamp=False, index=None):
        """An integer array checked by _check_ints, as something self.array
        converts without changing a value."""
        checked = _check_ints(value, name, bounds, clamp, index)
        if checked is value:
            return value
        import numpy
        if dtype == "uint64":
            # -1 is 2**64 - 1, as for scalars; NumPy would make a list
            # mixing large and small ints float64.
            return numpy.array([_u64(v) for v in checked], dtype=numpy.uint64)
        return numpy.array(checked, dtype=numpy.dtype(dtype))


def _u64(v):
    return int(v) & _U64


def _fresh_seed():
    return random.SystemRandom().getrandbits(64)


# ------------------------------------------------------------- sample()
def sample(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0,
           repetition_penalty=1.0, presence_penalty=0.0, frequency_penalty=0.0,
           seed=None, offset=0, num_samples=None, history=None, prompt_lengths=None,
           history_offsets=None, history_ids=None,
           return_logprobs=False, return_raw_logprobs=False, return_probs=False,
           num_threads=0, algorithm="auto"):
    """Samples every row of `logits` ([B, V] or [V]; float32, float16 or
    bfloat16; any tensor with __dlpack__ or __cuda_array_interface__, read in
    place) with kiln: penalties, temperature (0 is greedy), top-k, top-p,
    min-p, then n draws per row. Runs on the tensor's device: the CPU backend
    for host memory, the CUDA backend on the library's current stream for
    device memory (no synchronisation, no host copy).

    Every parameter is a Python scalar for all rows, or a tensor of B values
    (any library; converted to float32 / int32 / uint64 on the device if it
    is not one already). seed=None draws a fresh random seed per call;
    pass seed (and advance offset by 1 per decoding step) to reproduce.

    history: per-row token ids for the penalties, a list of B sequences
    (host data). Or, already on the logits' device, the CSR form of kiln.h:
    history_offsets [B+1] int64 and history_ids int32, row b's ids being
    history_ids[history_offsets[b]:history_offsets[b+1]]. prompt_lengths: B
    values (or one), how many of a row's history ids are prompt (the rest
    were generated).

    num_threads: CPU backend threads (0: OpenMP's default). algorithm:
    "auto", "sort" or "select" (the same bytes; speed differs).

    Returns a SampleResult of tensors of the logits' kind. Raises KilnError
    with kiln's message for bad input."""
    v = view(logits)
    if v.ndim not in (1, 2):
        raise ValueError(f"kiln: logits must be [B, V] or [V], got shape {v.shape}")
    squeeze = v.ndim == 1
    rows, vocab = (1, v.shape[0]) if squeeze else v.shape
    row_stride = vocab if squeeze else v.strides[0]
    if vocab > 1 and v.strides[-1] != 1:
        raise ValueError("kiln: logits rows must be contiguous (last stride 1); rows may "
                         "be strided")
    if v.dtype not in _DTYPES:
        raise TypeError(f"kiln: logits dtype {v.dtype} is not float32, float16 or bfloat16")
    if rows == 1:
        row_stride = vocab

    arrays = lib_for(logits, v)
    want_cuda = v.device == CUDA
    stream = arrays.stream() if want_cuda else 0
    if want_cuda and hasattr(logits, "__dlpack__") and not hasattr(logits, "data_ptr") \
            and not hasattr(logits, "__cuda_array_interface__"):
        v = view(logits, stream)  # re-export ordered on the stream kiln uses
    n = 1 if num_samples is None else _check_int(num_samples, "num_samples", (1, _I32[1]))
    num_threads = _check_int(num_threads, "num_threads", (0, _I32[1]))

    call = _Call(arrays, v.device, rows, stream)
    call.keep.append(v)

    batch = _capi.Batch()
    batch.dtype = _DTYPES[v.dtype]
    batch.logits = v.ptr
    batch.num_rows = rows
    batch.vocab_size = vocab
    batch.row_stride = row_stride
    batch.num_samples = n

    history_len = 0
    if (history_offsets is None) != (history_ids is None):
        raise ValueError("kiln: history_offsets and history_ids go together")
    if history_offsets is not None:
        if history is not None:
            raise ValueError("kiln: pass history, or history_offsets and history_ids, not both")
        history_offsets = call.ints(history_offsets, "int64", "history_offsets", _I64)
        batch.history_offsets = call.array(history_offsets, "int64", "history_offsets", rows + 1)
        history_ids = call.ints(history_ids, "int32", "history_ids", _I32)
        count = view(history_ids).shape[0] if is_tensor(history_ids) else len(history_ids)
        batch.history_ids = call.array(history_ids, "int32", "history_ids", count)
        # No row is longer than all ids together; no device read needed.
        history_len = max(count, 1)
    elif history is not None:
        # An id past int32 would wrap into range and penalise another token;
        # int32 ids outside [0, V) are left to kiln's own check and message.
        seqs = [[_check_int(t, f"history[{b}][{i}]", _I32)
                 for i, t in enumerate(_host_list(h))] for b, h in enumerate(history)]
        if len(seqs) != rows:
            raise ValueError(f"kiln: history has {len(seqs)} rows, expected {rows}")
        offs = [0]
        for s in seqs:
            offs.append(offs[-1] + len(s))
        flat = [t for s in seqs for t in s]
        batch.history_offsets = call.array(offs, "int64", "history offsets", rows + 1)
        batch.history_ids = call.array(flat or [0], "int32", "history ids", max(len(flat), 1))
        history_len = max(max((len(s) for s in seqs), default=0), 1)
    if prompt_lengths is not None:
        if history is None and history_offsets is None:
            raise ValueError("kiln: prompt_lengths given without a history")
        if _is_scalar(prompt_lengths):
            prompt_lengths = [_check_int(_scalar(prompt_lengths), "prompt_lengths", _I32)] * rows
        prompt_lengths = call.ints(prompt_lengths, "int32", "prompt_lengths", _I32)
        batch.prompt_lengths = call.array(prompt_lengths, "int32", "prompt_lengths")

    p = _capi.SamplingParams()
    call.param(p, "temperature", temperature, "float32", float)
    call.param(p, "top_k", top_k, "int32", int, _I32, clamp=True)
    call.param(p, "top_p", top_p, "float32", float)
    call.param(p, "min_p", min_p, "float32", float)
    call.param(p, "repetition_penalty", repetition_penalty, "float32", float)
    call.param(p, "presence_penalty", presence_penalty, "float32", float)
    call.param(p, "frequency_penalty", frequency_penalty, "float32", float)
    call.param(p, "seed", _fresh_seed() if seed is None else seed, "uint64", _u64, _SEED)
    call.param(p, "offset", 0 if offset is None else offset, "uint64", _u64, _SEED)

    lead = () if squeeze else (rows,)
    tok_shape = lead if num_samples is None else lead + (n,)
    out = _capi.Outputs()
    tokens = arrays.empty(tok_shape, "int32")
    out.tokens = arrays.ptr(tokens)
    result = {"tokens": tokens}
    if return_logprobs:
        result["logprobs"] = arrays.empty(tok_shape, "float32")
        out.logprobs = arrays.ptr(result["logprobs"])
    if return_raw_logprobs:
        result["raw_logprobs"] = arrays.empty(tok_shape, "float32")
        out.raw_logprobs = arrays.ptr(result["raw_logprobs"])
    if return_probs:
        result["probs"] = arrays.empty(lead + (vocab,), "float32")
        out.probs = arrays.ptr(result["probs"])
        out.probs_row_stride = vocab
    result["kept_counts"] = arrays.empty(lead if lead else (1,), "int32")
    out.kept_counts = arrays.ptr(result["kept_counts"])
    result["valid"] = arrays.empty(lead if lead else (1,), "uint8")
    out.valid = arrays.ptr(result["valid"])

    kind = _capi.BACKEND_CUDA if want_cuda else _capi.BACKEND_CPU
    device = v.device_id if want_cuda else 0
    algo = _ALGORITHMS.get(algorithm)
    if algo is None:
        raise ValueError(f"kiln: algorithm {algorithm!r} is not one of {sorted(_ALGORITHMS)}")
    s = _sampler(kind, device, arrays, (rows, vocab, n, history_len), int(num_threads), algo)
    ws = s.workspace(arrays, stream)
    check(lib.kiln_sample(s.handle, ctypes.byref(batch), ctypes.byref(p), ctypes.byref(out),
                          ws, s.workspace_size, stream or None))
    arrays.after_call(stream)
    if squeeze:
        result["kept_counts"] = result["kept_counts"][0]
        result["valid"] = result["valid"][0]
    return SampleResult(**result)


def _host_list(h):
    if is_tensor(h) and not isinstance(h, (list, tuple)):
        v = view(h)
        if v.device != CPU:
            raise ValueError("kiln: a history given as a list of rows must be host data; "
                             "pass history_offsets and history_ids for device-resident histories")
        import numpy
        return numpy.asarray(h).tolist() if not hasattr(h, "tolist") else h.tolist()
    return h


# -------------------------------------------------- serving-stack shapes
def top_k_top_p_sampling_from_logits(logits, top_k, top_p, *, temperature=1.0, seed=None,
                                     offset=0, filter_apply_order="top_k_first",
                                     deterministic=True, check_nan=False):
    """FlashInfer's call, through kiln: one token per row of `logits`
    [B, V], after temperature, top-k, then top-p. top_k / top_p / temperature
    / seed / offset: a scalar or B values. Returns int32 tokens [B]; a row
    whose logits hold NaN or +inf gets -1 (with check_nan=True a KilnError
    is raised instead, which reads the valid flags back: a host sync on GPU).
    kiln is always deterministic; only the top-k-first order exists."""
    if filter_apply_order != "top_k_first":
        raise ValueError("kiln applies top-k, then top-p (filter_apply_order='top_k_first')")
    r = sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
               offset=offset)
    if check_nan:
        _check_valid(r.valid)
    return r.tokens


def top_p_sampling_from_logits(logits, top_p, *, temperature=1.0, seed=None, offset=0):
    """One token per row after temperature and top-p (nucleus)."""
    return sample(logits, temperature=temperature, top_p=top_p, seed=seed, offset=offset).tokens


def top_k_sampling_from_logits(logits, top_k, *, temperature=1.0, seed=None, offset=0):
    """One token per row after temperature and top-k."""
    return sample(logits, temperature=temperature, top_k=top_k, seed=seed, offset=offset).tokens


def min_p_sampling_from_logits(logits, min_p, *, temperature=1.0, seed=None, offset=0):
    """One token per row after temperature and min-p."""
    return sample(logits, temperature=temperature, min_p=min_p, seed=seed, offset=offset).tokens


def sampling_from_logits(logits, *, temperature=1.0, seed=None, offset=0):
    """One token per row from softmax(logits / temperature)."""
    return sample(logits, temperature=temperature, seed=seed, offset=offset).tokens


def greedy(logits):
    """argmax of each row (ties to the lowest id), as kiln defines it."""
    return sample(logits, temperature=0.0, seed=0).tokens


def _check_valid(valid):
    v = view(valid)
    if v.device == CPU:
        import numpy
        flags = numpy.asarray(valid)
    else:
        flags = valid.cpu().numpy() if hasattr(valid, "cpu") else valid.get()
    bad = [i for i, f in enumerate(flags.reshape(-1).tolist()) if not f]
    if bad:
        raise KilnError(_capi.ERROR_INVALID_PARAMETER,
                        f"row {bad[0]} of the logits holds NaN or +inf "
                        f"({len(bad)} invalid row{'s' if len(bad) > 1 else ''})")


# ------------------------------------------------------------ best of n
def best_of_n(scores):
    """For scores [G, n] (float32), the index of the highest score in each
    group of n, ties to the lowest index, NaN never (-1 for all-NaN).
    Returns int32 [G] of the scores' kind."""
    v = view(scores)
    if v.ndim != 2 or not v.is_contiguous() or v.dtype != "float32":
        raise ValueError("kiln: scores must be a contiguous float32 [G, n] array")
    arrays = lib_for(scores, v)
    cuda = v.device == CUDA
    stream = arrays.stream() if cuda else 0
    groups, n = v.shape
    best = arrays.empty((groups,), "int32")
    s = _sampler(_capi.BACKEND_CUDA if cuda else _capi.BACKEND_CPU, v.device_id if cuda else 0,
                 arrays, (1, 1, 1, 0), 0, _capi.ALGORITHM_AUTO)
    check(lib.kiln_best_of_n(s.handle, v.ptr, groups, n, arrays.ptr(best), stream or None))
    arrays.after_call(stream)
    return best


__all__ = ["SampleResult", "sample", "top_k_top_p_sampling_from_logits",
           "top_p_sampling_from_logits", "top_k_sampling_from_logits",
           "min_p_sampling_from_logits", "sampling_from_logits", "greedy", "best_of_n",
           "clear_cache"]
