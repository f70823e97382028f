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
    kept_counts [B] int32; valid [B] uint8; with top_logprobs=N,
    raw_top_ids / raw_top_logprobs / final_top_ids / final_top_logprobs
    [B, N] and raw_ranks shaped like tokens; with return_entropy, entropy and
    raw_entropy [B]; with dynatemp_range (or return_temperatures),
    temperatures [B]. With 1-D logits [V] the leading B is dropped. The
    first six fields keep their positions."""
    tokens: Any
    logprobs: Optional[Any] = None
    raw_logprobs: Optional[Any] = None
    probs: Optional[Any] = None
    kept_counts: Optional[Any] = None
    valid: Optional[Any] = None
    # Appended after the original six, so positional access stays the same.
    # top_logprobs=N: [B, N] each; raw_ranks is shaped like tokens.
    raw_top_ids: Optional[Any] = None
    raw_top_logprobs: Optional[Any] = None
    final_top_ids: Optional[Any] = None
    final_top_logprobs: Optional[Any] = None
    raw_ranks: Optional[Any] = None
    # return_entropy=True: [B] float32 each, nats.
    entropy: Optional[Any] = None
    raw_entropy: Optional[Any] = None
    # dynatemp_range (or return_temperatures=True): [B] float32.
    temperatures: Optional[Any] = None


class ScoreResult(NamedTuple):
    """What kiln.score returns (see its docstring for shapes)."""
    logprobs: Any
    ranks: Any
    top_ids: Optional[Any] = None
    top_logprobs: Optional[Any] = None
    entropy: Optional[Any] = None
    valid: Optional[Any] = None


class VerifyResult(NamedTuple):
    """What kiln.verify_drafts returns: tokens [B, K + 1], num_accepted [B],
    logprobs [B, K + 1], valid [B]."""
    tokens: Any
    num_accepted: Any
    logprobs: Any
    valid: Any


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
        self.limits = (config.max_batch, config.max_vocab, config.max_samples, config.max_history,
                       config.max_top_logprobs)
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
        have = s.limits if s is not None else (0, 0, 0, 0, 0)
        grown = [_grow(n, h) for n, h in zip(limits, have)]
        if limits[1] <= _capi.MAX_VOCAB_SIZE:  # past it, let kiln name the error
            grown[1] = min(grown[1], _capi.MAX_VOCAB_SIZE)
        grown[4] = min(grown[4], _capi.MAX_TOP_LOGPROBS)
        cfg = _capi.Config(backend=backend, device=device, max_batch=grown[0],
                           max_vocab=grown[1], max_samples=grown[2], max_history=grown[3],
                           num_threads=num_threads, algorithm=algorithm,
                           max_top_logprobs=grown[4])
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
           history_offsets=None, history_ids=None, allowed_mask=None, logit_bias=None,
           dynatemp_range=None, dynatemp_exponent=None,
           return_logprobs=False, return_raw_logprobs=False, return_probs=False,
           top_logprobs=0, return_entropy=False, return_temperatures=False,
           num_threads=0, algorithm="auto"):
    """Samples every row of `logits` ([B, V] or [V]; float32, float16 or
    bfloat16; any tensor with __dlpack__ or __cuda_array_interface__, read in
    place) with kiln: token mask, logit bias, penalties, temperature (0 is
    greedy), top-k, top-p, min-p, then n draws per row. Runs on the tensor's
    device: the CPU backend for host memory, the CUDA backend on the
    library's current stream for device memory (no synchronisation, no host
    copy).

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

    allowed_mask: int32 [B, W >= ceil(V/32)] words in xgrammar's layout (bit
    j % 32 of word j // 32 allows token j; used in place on the logits'
    device), or a bool [B, V] array (packed into words first). logit_bias:
    OpenAI's logit_bias, a list of B dicts {token id: bias} (None or {} for
    none) or one dict for every row. dynatemp_range / dynatemp_exponent:
    entropy-adaptive temperature (docs/semantics.md section 16), a scalar or
    B values; the temperature used comes back in `temperatures`.

    top_logprobs=N (0..1024): the N most likely raw tokens with their raw
    log-probabilities, the first N kept tokens with their final ones, and
    the raw rank of each draw. return_entropy: the entropy of the final and
    of the raw distribution, in nats.

    num_threads: CPU backend threads (0: OpenMP's default). algorithm:
    "auto", "sort" or "select" (the same bytes; speed differs).

    Returns a SampleResult of tensors of the logits' kind. Raises KilnError
    with kiln's message for bad input."""
    v = view(logits)
    if v.ndim not in (1, 2):
        raise ValueError(f"kiln: logits must be [B, V] or [V], got shape {v.shape}")
    squeeze = v.ndim == 1
    rows, vocab = (1, v.shape[0]) if squeeze else v.shape
    row_stride = vocab if squeeze or rows == 1 else v.strides[0]
    _check_logits(v, vocab)
    arrays, v, stream = _open(logits, v)
    n = 1 if num_samples is None else _check_int(num_samples, "num_samples", (1, _I32[1]))
    num_threads = _check_int(num_threads, "num_threads", (0, _I32[1]))
    num_top = _check_int(top_logprobs or 0, "top_logprobs", (0, _capi.MAX_TOP_LOGPROBS))

    call = _Call(arrays, v.device, rows, stream)
    call.keep.append(v)
    batch = _batch(v, rows, vocab, row_stride)
    batch.num_samples = n
    history_len = _history(call, batch, rows, history, history_offsets, history_ids,
                           prompt_lengths)
    _allowed_mask(call, batch, allowed_mask, rows, vocab, squeeze)
    _logit_bias(call, batch, logit_bias, rows)

    p = _capi.SamplingParams()
    _filters(call, p, temperature, top_k, top_p, min_p, dynatemp_range, dynatemp_exponent)
    _penalties(call, p, repetition_penalty, presence_penalty, frequency_penalty)
    _seeds(call, p, seed, offset)

    lead = () if squeeze else (rows,)
    tok_shape = lead if num_samples is None else lead + (n,)
    row_shape = lead if lead else (1,)
    out = _capi.Outputs()
    result = {}
    _output(arrays, out, result, "tokens", tok_shape, "int32")
    if return_logprobs:
        _output(arrays, out, result, "logprobs", tok_shape, "float32")
    if return_raw_logprobs:
        _output(arrays, out, result, "raw_logprobs", tok_shape, "float32")
    if return_probs:
        _output(arrays, out, result, "probs", lead + (vocab,), "float32")
        out.probs_row_stride = vocab
    _output(arrays, out, result, "kept_counts", row_shape, "int32")
    _output(arrays, out, result, "valid", row_shape, "uint8")
    if num_top:
        out.num_top_logprobs = num_top
        for name, dtype in (("raw_top_ids", "int32"), ("raw_top_logprobs", "float32"),
                            ("final_top_ids", "int32"), ("final_top_logprobs", "float32")):
            _output(arrays, out, result, name, lead + (num_top,), dtype)
        _output(arrays, out, result, "raw_ranks", tok_shape, "int32")
    if return_entropy:
        _output(arrays, out, result, "entropy", row_shape, "float32")
        _output(arrays, out, result, "raw_entropy", row_shape, "float32")
    if return_temperatures or dynatemp_range is not None:
        _output(arrays, out, result, "temperatures", row_shape, "float32")

    s, ws = _ready(v, arrays, stream, (rows, vocab, n, history_len, num_top), num_threads,
                   algorithm)
    check(lib.kiln_sample(s.handle, ctypes.byref(batch), ctypes.byref(p), ctypes.byref(out),
                          ws, s.workspace_size, stream or None))
    arrays.after_call(stream)
    if squeeze:
        for name in ("kept_counts", "valid", "entropy", "raw_entropy", "temperatures"):
            if name in result:
                result[name] = result[name][0]
    return SampleResult(**result)


# ------------------------------------------------ the pieces of a call
def _check_logits(v, vocab):
    if vocab > 1 and v.strides[-1] != 1:
        raise ValueError("kiln: logits rows must be contiguous (last stride 1); rows may "
                         "be strided")
    if v.dtype not in _DTYPES:
        raise TypeError(f"kiln: logits dtype {v.dtype} is not float32, float16 or bfloat16")


def _open(logits, v):
    """The logits' array library, their view ordered on kiln's stream, and
    that stream (0 on the CPU)."""
    arrays = lib_for(logits, v)
    want_cuda = v.device == CUDA
    stream = arrays.stream() if want_cuda else 0
    if want_cuda and hasattr(logits, "__dlpack__") and not hasattr(logits, "data_ptr") \
            and not hasattr(logits, "__cuda_array_interface__"):
        v = view(logits, stream)  # re-export ordered on the stream kiln uses
    return arrays, v, stream


def _batch(v, rows, vocab, row_stride):
    batch = _capi.Batch()
    batch.dtype = _DTYPES[v.dtype]
    batch.logits = v.ptr
    batch.num_rows = rows
    batch.vocab_size = vocab
    batch.row_stride = row_stride
    return batch


def _ready(v, arrays, stream, limits, num_threads, algorithm):
    """The cached sampler for this call's limits and its workspace."""
    want_cuda = v.device == CUDA
    kind = _capi.BACKEND_CUDA if want_cuda else _capi.BACKEND_CPU
    device = v.device_id if want_cuda else 0
    algo = _ALGORITHMS.get(algorithm)
    if algo is None:
        raise ValueError(f"kiln: algorithm {algorithm!r} is not one of {sorted(_ALGORITHMS)}")
    s = _sampler(kind, device, arrays, limits, int(num_threads), algo)
    return s, s.workspace(arrays, stream)


def _output(arrays, out, result, name, shape, dtype, field=None):
    result[name] = arrays.empty(shape, dtype)
    setattr(out, field or name, arrays.ptr(result[name]))


def _filters(call, p, temperature, top_k, top_p, min_p, dynatemp_range, dynatemp_exponent):
    call.param(p, "temperature", temperature, "float32", float)
    call.param(p, "top_k", top_k, "int32", int, _I32, clamp=True)
    call.param(p, "top_p", top_p, "float32", float)
    call.param(p, "min_p", min_p, "float32", float)
    call.param(p, "dynatemp_range", dynatemp_range, "float32", float)
    call.param(p, "dynatemp_exponent", dynatemp_exponent, "float32", float)


def _penalties(call, p, repetition_penalty, presence_penalty, frequency_penalty):
    call.param(p, "repetition_penalty", repetition_penalty, "float32", float)
    call.param(p, "presence_penalty", presence_penalty, "float32", float)
    call.param(p, "frequency_penalty", frequency_penalty, "float32", float)


def _seeds(call, p, seed, offset):
    call.param(p, "seed", _fresh_seed() if seed is None else seed, "uint64", _u64, _SEED)
    call.param(p, "offset", 0 if offset is None else offset, "uint64", _u64, _SEED)


def _history(call, batch, rows, history, history_offsets, history_ids, prompt_lengths):
    """Sets the batch's history (lists of ids, or CSR arrays) and prompt
    lengths; returns the longest row's length (at least 1) for the sampler's
    max_history, or 0 without a history."""
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
        offs, flat = _csr(seqs)
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
    return history_len


def _csr(seqs):
    offs = [0]
    for s in seqs:
        offs.append(offs[-1] + len(s))
    return offs, [t for s in seqs for t in s]


# ------------------------------------------------------- the token mask
def _allowed_mask(call, batch, mask, rows, vocab, squeeze, positions=None):
    """Sets batch.allowed_mask from int32 words [rows, W] (W >= ceil(V/32),
    rows may be strided) or a bool [rows, V] array, packed here. With 1-D
    logits a 1-D mask ([W] or [V]) is the one row's; with `positions` (draft
    verification) [B, positions, W or V] is accepted too."""
    if mask is None:
        return
    words = -(-vocab // 32)
    if not is_tensor(mask) or isinstance(mask, (list, tuple)):
        mask = _mask_from_list(mask)
    m = view(mask)
    if squeeze and m.ndim == 1:
        shape, strides = (1,) + m.shape, (m.shape[0],) + m.strides
    elif m.ndim == 2:
        shape, strides = m.shape, m.strides
    elif m.ndim == 3 and positions and m.shape[:2] == (rows // positions, positions) and \
            (m.shape[1] == 1 or m.strides[0] == m.shape[1] * m.strides[1]):
        shape, strides = (rows, m.shape[2]), (m.strides[1], m.strides[2])  # [B, K + 1, W]
    else:
        raise ValueError(f"kiln: allowed_mask has shape {m.shape}, expected ({rows}, "
                         f"{words}) int32 words or ({rows}, {vocab}) bool")
    if m.dtype == "bool":
        if shape != (rows, vocab):
            raise ValueError(f"kiln: allowed_mask (bool) has shape {m.shape}, expected "
                             f"({rows}, {vocab}), a row per token of V = {vocab}")
        mask = _pack_bool_mask(mask, rows, vocab)
        m = view(mask)
        shape, strides = m.shape, m.strides
    elif m.dtype not in ("int32", "uint32"):
        raise TypeError(f"kiln: allowed_mask dtype {m.dtype} is not int32 (bit words) or bool")
    if shape[0] != rows or shape[1] < words:
        raise ValueError(f"kiln: allowed_mask has shape {m.shape}, expected ({rows}, W >= "
                         f"{words}) int32 words (ceil(V / 32) for V = {vocab})")
    if m.device == call.device and (shape[1] == 1 or strides[1] == 1) and \
            (rows == 1 or strides[0] >= shape[1]):
        call.keep.append((mask, m))
        batch.allowed_mask = m.ptr
        batch.allowed_mask_stride = shape[1] if rows == 1 else strides[0]
        return
    # Another device or layout: one contiguous copy on the logits' device.
    import numpy
    host = _host_array(mask)
    if host.dtype == numpy.uint32:
        host = host.view(numpy.int32)
    flat = numpy.ascontiguousarray(host.reshape(shape), numpy.int32).reshape(-1)
    batch.allowed_mask = call.array(flat, "int32", "allowed_mask", flat.shape[0])
    batch.allowed_mask_stride = shape[1]


def _mask_from_list(mask):
    """A nested list of bools, or of ints (bit words, int32 or uint32
    values), as a NumPy array; ints outside 32 bits are an error naming the
    entry."""
    import numpy
    a = numpy.asarray(mask)
    if a.dtype == numpy.bool_:
        return a
    if a.dtype.kind not in "iu" and a.dtype != object:
        raise TypeError(f"kiln: allowed_mask entries must be bools or int32 words, got {a.dtype}")
    flat = a.reshape(-1).tolist()
    for i, w in enumerate(flat):
        idx = "".join(f"[{j}]" for j in numpy.unravel_index(i, a.shape))
        _check_int(w, f"allowed_mask{idx}", (_I32[0], 2**32 - 1))
    return (numpy.array(flat, numpy.int64).reshape(a.shape) & 0xFFFFFFFF) \
        .astype(numpy.uint32).view(numpy.int32)


def _pack_bool_mask(mask, rows, vocab):
    """bool [rows, V] -> int32 words [rows, ceil(V/32)], bit j % 32 of word
    j // 32 for token j. PyTorch tensors are packed on their device; other
    arrays on the host."""
    words = -(-vocab // 32)
    if hasattr(mask, "data_ptr") and type(mask).__module__.startswith("torch"):
        import torch
        m = mask.reshape(rows, vocab)
        w = torch.zeros((rows, words * 32), dtype=torch.int64, device=m.device)
        w[:, :vocab] = m.to(torch.int64)
        shifts = torch.arange(32, dtype=torch.int64, device=m.device)
        w = (w.view(rows, words, 32) << shifts).sum(-1)
        return torch.where(w >= 2**31, w - 2**32, w).to(torch.int32).contiguous()
    import numpy
    m = _host_array(mask).reshape(rows, vocab).astype(bool)
    padded = numpy.zeros((rows, words * 32), bool)
    padded[:, :vocab] = m
    packed = numpy.packbits(padded.reshape(rows, words, 32), axis=-1, bitorder="little")
    return numpy.ascontiguousarray(packed).view("<i4").reshape(rows, words)


def _host_array(x):
    import numpy
    if is_tensor(x) and view(x).device != CPU:
        x = x.cpu() if hasattr(x, "cpu") else x.get()
    elif is_tensor(x) and hasattr(x, "__dlpack__") and not hasattr(x, "__array__"):
        return numpy.from_dlpack(x)
    return numpy.asarray(x)


# ------------------------------------------------------- the logit bias
def _logit_bias(call, batch, bias, rows):
    """OpenAI's logit_bias: one dict {id: bias} for every row, or a list of
    `rows` dicts (None for none), as kiln.h's CSR arrays. Ids are checked
    against int32 here; [0, V) and finite values are kiln's checks."""
    if bias is None:
        return
    if isinstance(bias, dict):
        per_row = [bias] * rows
    elif isinstance(bias, (list, tuple)):
        per_row = list(bias)
        if len(per_row) != rows:
            raise ValueError(f"kiln: logit_bias has {len(per_row)} rows, expected {rows}")
    else:
        raise TypeError("kiln: logit_bias must be a dict {token id: bias} or a list of them, "
                        f"one per row, not {type(bias).__name__}")
    ids, values = [], []
    for b, d in enumerate(per_row):
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise TypeError(f"kiln: logit_bias[{b}] must be a dict {{token id: bias}}, not "
                            f"{type(d).__name__}")
        ids.append([_check_int(t, f"logit_bias[{b}] id", _I32) for t in d])
        values.append([_bias_value(x, b, t) for t, x in d.items()])
    offs, flat_ids = _csr(ids)
    flat_values = [x for r in values for x in r]
    count = max(len(flat_ids), 1)
    batch.logit_bias_offsets = call.array(offs, "int64", "logit_bias offsets", rows + 1)
    batch.logit_bias_ids = call.array(flat_ids or [0], "int32", "logit_bias ids", count)
    batch.logit_bias_values = call.array(flat_values or [0.0], "float32", "logit_bias values",
                                         count)


def _bias_value(x, b, t):
    try:
        return float(x)
    except (TypeError, ValueError):
        raise ValueError(f"kiln: logit_bias[{b}][{t!r}] = {x!r} is not a number") from None


# -------------------------------------------------------------- score()
def score(logits, targets=None, *, repetition_penalty=1.0, presence_penalty=0.0,
          frequency_penalty=0.0, history=None, prompt_lengths=None, history_offsets=None,
          history_ids=None, allowed_mask=None, logit_bias=None, top_logprobs=0,
          num_threads=0, algorithm="auto"):
    """Scores given tokens under each row's raw distribution (kiln_score:
    mask, logit bias and penalties, then the log-softmax at T = 1; no
    filters, no draws), for prompt log-probabilities and evaluation.

    logits: [B, V] or [V] as for kiln.sample. targets: [B, K] token ids
    (-1 is padding), a tensor or a list of B lists (shorter lists are padded
    with -1); [K] with 1-D logits; None for none. The mask, bias, history and
    penalties are kiln.sample's. top_logprobs=N: the N most likely tokens
    and their raw log-probabilities.

    Returns a ScoreResult: logprobs [B, K] (NaN for padding and invalid
    rows), ranks [B, K] int32 (1 + the tokens before the target in
    canonical order; 0 for padding), top_ids / top_logprobs [B, N] (None
    unless asked for), entropy [B] (nats) and valid [B] uint8."""
    v = view(logits)
    if v.ndim not in (1, 2):
        raise ValueError(f"kiln: logits must be [B, V] or [V], got shape {v.shape}")
    squeeze = v.ndim == 1
    rows, vocab = (1, v.shape[0]) if squeeze else v.shape
    row_stride = vocab if squeeze or rows == 1 else v.strides[0]
    _check_logits(v, vocab)
    arrays, v, stream = _open(logits, v)
    num_threads = _check_int(num_threads, "num_threads", (0, _I32[1]))
    num_top = _check_int(top_logprobs or 0, "top_logprobs", (0, _capi.MAX_TOP_LOGPROBS))

    call = _Call(arrays, v.device, rows, stream)
    call.keep.append(v)
    batch = _batch(v, rows, vocab, row_stride)
    history_len = _history(call, batch, rows, history, history_offsets, history_ids,
                           prompt_lengths)
    _allowed_mask(call, batch, allowed_mask, rows, vocab, squeeze)
    _logit_bias(call, batch, logit_bias, rows)
    p = _capi.SamplingParams()
    _penalties(call, p, repetition_penalty, presence_penalty, frequency_penalty)
    targets_ptr, k = _targets(call, targets, rows, squeeze)

    lead = () if squeeze else (rows,)
    row_shape = lead if lead else (1,)
    out = _capi.ScoreOutputs()
    result = {}
    _output(arrays, out, result, "logprobs", lead + (k,), "float32")
    _output(arrays, out, result, "ranks", lead + (k,), "int32")
    if num_top:
        out.num_top_logprobs = num_top
        _output(arrays, out, result, "top_ids", lead + (num_top,), "int32")
        _output(arrays, out, result, "top_logprobs", lead + (num_top,), "float32")
    _output(arrays, out, result, "entropy", row_shape, "float32")
    _output(arrays, out, result, "valid", row_shape, "uint8")

    s, ws = _ready(v, arrays, stream, (rows, vocab, 1, history_len, num_top), num_threads,
                   algorithm)
    check(lib.kiln_score(s.handle, ctypes.byref(batch), ctypes.byref(p), targets_ptr, k,
                         ctypes.byref(out), ws, s.workspace_size, stream or None))
    arrays.after_call(stream)
    if squeeze:
        result["entropy"] = result["entropy"][0]
        result["valid"] = result["valid"][0]
    return ScoreResult(**result)


def _targets(call, targets, rows, squeeze, name="targets"):
    """[rows, K] int32 ids (a tensor, or lists padded with -1) in backend
    memory: (pointer or None, K)."""
    return _id_matrix(call, targets, rows, squeeze, name, pad=-1)


def _id_matrix(call, ids, rows, squeeze, name, pad, width=None):
    """An int32 id matrix [rows, K] in backend memory: (pointer or None, K).
    Lists of ids are checked one by one and padded with `pad` to `width`
    (default: the longest)."""
    if ids is None:
        return None, 0
    if not is_tensor(ids) or isinstance(ids, (list, tuple)):
        seqs = [ids] if squeeze else list(ids)
        if len(seqs) != rows:
            raise ValueError(f"kiln: {name} has {len(seqs)} rows, expected {rows}")
        seqs = [[_check_int(t, f"{name}[{b}][{i}]" if not squeeze else f"{name}[{i}]", _I32)
                 for i, t in enumerate(_host_list(s))] for b, s in enumerate(seqs)]
        k = max((len(s) for s in seqs), default=0) if width is None else width
        for b, s in enumerate(seqs):
            if len(s) > k:
                raise ValueError(f"kiln: {name}[{b}] has {len(s)} ids, more than {k}")
        flat = [t for s in seqs for t in s + [pad] * (k - len(s))]
        if k == 0:
            return None, 0
        return call.array(flat, "int32", name, rows * k), _check_int(k, f"{name} width", _I32)
    m = view(ids)
    shape = (1,) + m.shape if squeeze and m.ndim == 1 else m.shape
    if len(shape) != 2 or shape[0] != rows:
        raise ValueError(f"kiln: {name} has shape {m.shape}, expected ({rows}, K)")
    k = _check_int(shape[1], f"{name} width", _I32)
    if k == 0:
        return None, 0
    if m.dtype == "int32" and m.device == call.device and m.is_contiguous():
        call.keep.append((ids, m))
        return m.ptr, k
    cols = shape[1]
    checked = _check_ints(ids, name, _I32,
                          index=lambda i: f"{name}[{i // cols}][{i % cols}]" if not squeeze
                          else f"{name}[{i}]")
    if checked is ids:  # an element type that fits: flatten it where it is
        checked = ids.reshape(-1) if hasattr(ids, "reshape") else _host_array(ids).reshape(-1)
    return call.array(checked, "int32", name, rows * k), k


# ------------------------------------------------------ verify_drafts()
def verify_drafts(target_logits, draft_ids, num_drafts=None, draft_probs=None, *,
                  temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                  presence_penalty=0.0, frequency_penalty=0.0, seed=None, offset=0,
                  history=None, prompt_lengths=None, history_offsets=None, history_ids=None,
                  allowed_mask=None, logit_bias=None, dynatemp_range=None,
                  dynatemp_exponent=None, num_threads=0, algorithm="auto"):
    """Speculative decoding: verifies K draft tokens per request by exact
    rejection sampling against kiln's own final distribution at each
    position (kiln_verify_drafts, docs/semantics.md section 19).

    target_logits: [B, K + 1, V], position i of request b being the target
    model's logits after drafts 0..i-1 (rows may be strided, positions
    evenly). draft_ids: [B, K] int32 ids (a tensor or B lists of K).
    num_drafts: K_b per request in [0, K] (a scalar or B values; None: all K).
    draft_probs: [B, K, V] float32, the draft model's distribution at each
    position (None: one-hot drafts, as from n-gram or greedy proposers).
    The sampling parameters are kiln.sample's, per request; the history is
    per request (the drafts are appended to it position by position), and
    allowed_mask has a row per target row ([B, K + 1, W] words or
    [B, K + 1, V] bool). With K_b = 0 the result is kiln.sample's token for
    the same row, seed and offset; advance offset by num_accepted + 1.

    Returns a VerifyResult: tokens [B, K + 1] int32 (the accepted drafts,
    the correction or bonus token, then -1), num_accepted [B] int32,
    logprobs [B, K + 1] float32 (NaN past the emitted tokens), valid [B]
    uint8."""
    v = view(target_logits)
    if v.ndim != 3:
        raise ValueError(f"kiln: target_logits must be [B, K + 1, V], got shape {v.shape}")
    B, positions, vocab = v.shape
    if positions < 1:
        raise ValueError("kiln: target_logits must have K + 1 >= 1 positions")
    K = positions - 1
    rows = B * positions
    if positions > 1 and B > 1 and v.strides[0] != positions * v.strides[1]:
        raise ValueError("kiln: target_logits rows must be evenly strided (stride[0] = "
                         "(K + 1) * stride[1]); make it contiguous")
    row_stride = vocab if rows == 1 else (v.strides[1] if positions > 1 else v.strides[0])
    _check_logits(v, vocab)
    arrays, v, stream = _open(target_logits, v)
    num_threads = _check_int(num_threads, "num_threads", (0, _I32[1]))

    call = _Call(arrays, v.device, B, stream)
    call.keep.append(v)
    batch = _batch(v, B, vocab, row_stride)
    history_len = _history(call, batch, B, history, history_offsets, history_ids,
                           prompt_lengths)
    _allowed_mask(call, batch, allowed_mask, rows, vocab, False, positions)
    _logit_bias(call, batch, logit_bias, B)
    p = _capi.SamplingParams()
    _filters(call, p, temperature, top_k, top_p, min_p, dynatemp_range, dynatemp_exponent)
    _penalties(call, p, repetition_penalty, presence_penalty, frequency_penalty)
    _seeds(call, p, seed, offset)

    drafts = _capi.Drafts()
    drafts.max_drafts = K
    if num_drafts is None and isinstance(draft_ids, (list, tuple)):
        num_drafts = [len(_host_list(d)) for d in draft_ids]  # ragged lists: K_b each
    ids_ptr, width = _id_matrix(call, draft_ids, B, False, "draft_ids", pad=0, width=K)
    if K > 0 and width != K:
        raise ValueError(f"kiln: draft_ids has {width} columns, expected K = {K} "
                         f"(target_logits has K + 1 = {positions} positions)")
    drafts.draft_ids = ids_ptr
    if num_drafts is not None:
        if _is_scalar(num_drafts):
            num_drafts = [_check_int(_scalar(num_drafts), "num_drafts", _I32)] * B
        num_drafts = call.ints(num_drafts, "int32", "num_drafts", _I32)
        drafts.num_drafts = call.array(num_drafts, "int32", "num_drafts")
    if draft_probs is not None:
        drafts.draft_probs, drafts.draft_probs_stride = _draft_probs(call, draft_probs, B, K,
                                                                     vocab)

    out = _capi.VerifyOutputs()
    result = {}
    _output(arrays, out, result, "tokens", (B, positions), "int32")
    _output(arrays, out, result, "num_accepted", (B,), "int32")
    _output(arrays, out, result, "logprobs", (B, positions), "float32")
    _output(arrays, out, result, "valid", (B,), "uint8")

    s, ws = _ready(v, arrays, stream, (rows, vocab, 1, history_len, 0), num_threads,
                   algorithm)
    check(lib.kiln_verify_drafts(s.handle, ctypes.byref(batch), ctypes.byref(p),
                                 ctypes.byref(drafts), ctypes.byref(out), ws, s.workspace_size,
                                 stream or None))
    arrays.after_call(stream)
    return VerifyResult(**result)


def _draft_probs(call, q, B, K, vocab):
    """[B, K, V] float32 in backend memory (positions may be strided, last
    dimension contiguous): (pointer, elements between distributions)."""
    m = view(q)
    if m.shape != (B, K, vocab):
        raise ValueError(f"kiln: draft_probs has shape {m.shape}, expected ({B}, {K}, {vocab})")
    rows = B * K
    if rows == 0:
        return None, 0
    stride = m.strides[1] if K > 1 else m.strides[0]
    even = K == 1 or B == 1 or m.strides[0] == K * m.strides[1]
    if m.dtype == "float32" and m.device == call.device and even and \
            (vocab == 1 or m.strides[2] == 1) and (rows == 1 or stride >= vocab):
        call.keep.append((q, m))
        return m.ptr, (vocab if rows == 1 else stride)
    if m.device == call.device and hasattr(q, "reshape") and hasattr(q, "contiguous"):
        flat = q.contiguous().reshape(-1)  # PyTorch: converted on its device
    else:
        flat = _host_array(q).reshape(-1)
    return call.array(flat, "float32", "draft_probs", rows * vocab), vocab


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
def chain_speculative_sampling(draft_probs, draft_token_ids, target_probs, *, seed=None,
                               offset=0, deterministic=True):
    """FlashInfer's call, through kiln_verify_drafts: draft_probs [B, K, V]
    (or None for one-hot drafts), draft_token_ids [B, K], target_probs
    [B, K + 1, V] (probabilities, as FlashInfer takes them; kiln verifies
    against their logarithms at T = 1, whose softmax is the same
    distribution up to kiln's quantisation of the masses).

    Returns (output_token_ids [B, K + 1] int32 with -1 after the emitted
    token, output_accepted_token_num [B], output_emitted_draft_token_num [B]).
    FlashInfer's accepted count is a statistic that tests every position,
    also past the first rejection; kiln stops at the first rejection, so it
    returns the emitted count for both. kiln is always deterministic."""
    logits = _log_of(target_probs)
    r = verify_drafts(logits, draft_token_ids, draft_probs=draft_probs, seed=seed, offset=offset)
    return r.tokens, r.num_accepted, r.num_accepted


def _log_of(probs):
    """log(p) in the probabilities' own library (0 -> -inf)."""
    if hasattr(probs, "log") and not isinstance(probs, (list, tuple)):
        return probs.log()
    import numpy
    with numpy.errstate(divide="ignore"):
        return numpy.log(numpy.asarray(probs, dtype=numpy.float32))


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
                 arrays, (1, 1, 1, 0, 0), 0, _capi.ALGORITHM_AUTO)
    check(lib.kiln_best_of_n(s.handle, v.ptr, groups, n, arrays.ptr(best), stream or None))
    arrays.after_call(stream)
    return best


__all__ = ["SampleResult", "ScoreResult", "VerifyResult", "sample", "score", "verify_drafts",
           "top_k_top_p_sampling_from_logits",
           "top_p_sampling_from_logits", "top_k_sampling_from_logits",
           "min_p_sampling_from_logits", "sampling_from_logits", "greedy", "best_of_n",
           "clear_cache"]
