"""kiln: batched LLM token sampling on the CPU and on CUDA GPUs, the same
bytes on both. Python bindings (ctypes) over libkiln.

    import kiln
    tokens = kiln.top_k_top_p_sampling_from_logits(logits, top_k=50, top_p=0.9,
                                                   temperature=0.7, seed=seeds, offset=step)
    r = kiln.sample(logits, temperature=0.7, top_p=0.9, seed=1, return_logprobs=True)

`logits` is any tensor with __dlpack__ or __cuda_array_interface__ (PyTorch,
NumPy, CuPy, JAX, ...), read in place on its own device; results come back
as tensors of the same kind on the same device. docs/usage.md in the
repository has more; docs/semantics.md defines every byte.
"""

from ._capi import KilnError, library_path, version_number, version_string
from ._sampling import (SampleResult, ScoreResult, VerifyResult, best_of_n,
                        chain_speculative_sampling, clear_cache, greedy,
                        min_p_sampling_from_logits, sample, sampling_from_logits, score,
                        top_k_sampling_from_logits, top_k_top_p_sampling_from_logits,
                        top_p_sampling_from_logits, verify_drafts)

__version__ = version_string()


def has_cuda():
    """True when the loaded library has the CUDA backend and a device is
    present (a CUDA sampler can be created)."""
    import ctypes
    from ._capi import BACKEND_CUDA, Config, lib
    handle = ctypes.c_void_p()
    status = lib.kiln_sampler_create(ctypes.byref(Config(backend=BACKEND_CUDA)),
                                     ctypes.byref(handle))
    if status == 0:
        lib.kiln_sampler_destroy(handle)
        return True
    return False


__all__ = ["KilnError", "SampleResult", "ScoreResult", "VerifyResult", "sample", "score",
           "chain_speculative_sampling",
           "verify_drafts", "top_k_top_p_sampling_from_logits",
           "top_p_sampling_from_logits", "top_k_sampling_from_logits",
           "min_p_sampling_from_logits", "sampling_from_logits", "greedy", "best_of_n",
           "clear_cache", "has_cuda", "version_number", "version_string", "library_path",
           "__version__"]
