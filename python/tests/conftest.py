"""Shared helpers: a direct ctypes call of kiln_sample (the C API, no
Python-side conveniences) to compare the package's bytes against, and
logit rows of the shapes real models produce."""
import ctypes

import numpy as np
import pytest

import kiln
from kiln import _capi

EFFORT_WORDS = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward", "you"]
EFFORT = np.array([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79], dtype=np.float32)


def zipf_rows(rows, vocab, seed):
    """Long-tailed rows: -1.1 * ln(rank) over a random permutation, plus noise."""
    rng = np.random.default_rng(seed)
    out = np.empty((rows, vocab), np.float32)
    for r in range(rows):
        rank = rng.permutation(vocab) + 1
        out[r] = (-1.1 * np.log(rank) + rng.normal(0, 0.3, vocab)).astype(np.float32)
    return out


def c_sample(logits, *, temperature, top_k, top_p, min_p=0.0, repetition=1.0, presence=0.0,
             frequency=0.0, seed, offset, n=1, history=None, prompt_lengths=None):
    """kiln_sample through ctypes exactly as a C program calls it: per-row
    parameters as host arrays (float32 / int32 / uint64), every output."""
    logits = np.ascontiguousarray(logits, np.float32)
    B, V = logits.shape

    def arr(v, dt):
        return np.ascontiguousarray(np.broadcast_to(np.asarray(v, dt), (B,)))

    keep = {
        "t": arr(temperature, np.float32), "k": arr(top_k, np.int32), "p": arr(top_p, np.float32),
        "m": arr(min_p, np.float32), "r": arr(repetition, np.float32),
        "pr": arr(presence, np.float32), "f": arr(frequency, np.float32),
        "s": arr(seed, np.uint64), "o": arr(offset, np.uint64),
    }
    cfg = _capi.Config(max_batch=B, max_vocab=V, max_samples=n,
                       max_history=max((len(h) for h in history), default=0) if history else 0)
    s = ctypes.c_void_p()
    _capi.check(_capi.lib.kiln_sampler_create(ctypes.byref(cfg), ctypes.byref(s)))
    size = ctypes.c_size_t()
    _capi.check(_capi.lib.kiln_sampler_workspace_size(s, ctypes.byref(size)))
    ws = np.empty(max(size.value, 1), np.uint8)
    b = _capi.Batch()
    b.logits = logits.ctypes.data
    b.num_rows, b.vocab_size, b.num_samples = B, V, n
    if history is not None:
        offs = np.zeros(B + 1, np.int64)
        offs[1:] = np.cumsum([len(h) for h in history])
        ids = np.array([t for h in history for t in h] or [0], np.int32)
        keep["offs"], keep["ids"] = offs, ids
        b.history_offsets, b.history_ids = offs.ctypes.data, ids.ctypes.data
        if prompt_lengths is not None:
            keep["pl"] = arr(prompt_lengths, np.int32)
            b.prompt_lengths = keep["pl"].ctypes.data
    p = _capi.SamplingParams()
    for field, key in [("temperature", "t"), ("top_k", "k"), ("top_p", "p"), ("min_p", "m"),
                       ("repetition_penalty", "r"), ("presence_penalty", "pr"),
                       ("frequency_penalty", "f"), ("seed", "s"), ("offset", "o")]:
        setattr(p, field, keep[key].ctypes.data)
    res = {"tokens": np.empty((B, n), np.int32), "logprobs": np.empty((B, n), np.float32),
           "raw_logprobs": np.empty((B, n), np.float32), "probs": np.empty((B, V), np.float32),
           "kept_counts": np.empty(B, np.int32), "valid": np.empty(B, np.uint8)}
    o = _capi.Outputs()
    for name, a in res.items():
        setattr(o, name, a.ctypes.data)
    try:
        _capi.check(_capi.lib.kiln_sample(s, ctypes.byref(b), ctypes.byref(p), ctypes.byref(o),
                                          ws.ctypes.data, size.value, None))
    finally:
        _capi.lib.kiln_sampler_destroy(s)
    return res


def same_bytes(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def has_gpu():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available() and kiln.has_cuda()


requires_gpu = pytest.mark.skipif(not has_gpu(), reason="no CUDA device, no PyTorch with CUDA, "
                                  "or kiln built without CUDA")
