"""ctypes mirror of include/kiln/kiln.h: the library, its structs and calls.

Every struct is laid out field for field as in kiln.h and its ``struct_size``
is set from ``ctypes.sizeof``, exactly as the C *_INIT macros do, so the
library sees a caller compiled against this header version.
"""

import ctypes
import os
import sys
from ctypes import (POINTER, Structure, c_char_p, c_float, c_int, c_int32, c_int64,
                    c_size_t, c_uint, c_uint8, c_uint64, c_void_p)

# ------------------------------------------------------------------ status
SUCCESS = 0
ERROR_NULL_POINTER = 1
ERROR_INVALID_SHAPE = 2
ERROR_INVALID_PARAMETER = 3
ERROR_INVALID_CONFIG = 4
ERROR_WORKSPACE_TOO_SMALL = 5
ERROR_MISALIGNED = 6
ERROR_OVERLAP = 7
ERROR_OUT_OF_MEMORY = 8
ERROR_BACKEND_UNAVAILABLE = 9
ERROR_CUDA = 10
ERROR_INTERNAL = 11

BACKEND_CPU = 0
BACKEND_CUDA = 1

DTYPE_F32 = 0
DTYPE_F16 = 1
DTYPE_BF16 = 2

ALGORITHM_AUTO = 0
ALGORITHM_SORT = 1
ALGORITHM_SELECT = 2

MAX_VOCAB_SIZE = (1 << 24) - 1
MAX_TOP_LOGPROBS = 1024  # kiln.h: kiln_config.max_top_logprobs is 0..1024


# ------------------------------------------------------------------- types
class Config(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("backend", c_int),
        ("device", c_int),
        ("max_batch", c_int64),
        ("max_vocab", c_int64),
        ("max_samples", c_int32),
        ("max_history", c_int64),
        ("num_threads", c_int),
        ("algorithm", c_int),
        ("max_hidden", c_int64),
        ("max_top_logprobs", c_int32),
    ]

    def __init__(self, **kw):
        # KILN_CONFIG_INIT
        super().__init__(ctypes.sizeof(Config), BACKEND_CPU, 0, 1, 0, 1, 0, 0, ALGORITHM_AUTO,
                         0, 0)
        for k, v in kw.items():
            setattr(self, k, v)


class Batch(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("dtype", c_int),
        ("logits", c_void_p),
        ("num_rows", c_int64),
        ("vocab_size", c_int64),
        ("row_stride", c_int64),
        ("num_samples", c_int32),
        ("history_offsets", c_void_p),  # const int64_t *
        ("history_ids", c_void_p),      # const int32_t *
        ("prompt_lengths", c_void_p),   # const int32_t *
        ("allowed_mask", c_void_p),     # const int32_t *
        ("allowed_mask_stride", c_int64),
        ("logit_bias_offsets", c_void_p),  # const int64_t *
        ("logit_bias_ids", c_void_p),      # const int32_t *
        ("logit_bias_values", c_void_p),   # const float *
    ]

    def __init__(self):
        # KILN_BATCH_INIT
        super().__init__(ctypes.sizeof(Batch), DTYPE_F32, None, 0, 0, 0, 1, None, None, None,
                         None, 0, None, None, None)


class SamplingParams(Structure):
    # Pointers are kept as c_void_p: they are backend memory (device memory
    # for CUDA), never dereferenced here.
    _fields_ = [
        ("struct_size", c_size_t),
        ("temperature", c_void_p), ("temperature_all", c_float),
        ("top_k", c_void_p), ("top_k_all", c_int32),
        ("top_p", c_void_p), ("top_p_all", c_float),
        ("min_p", c_void_p), ("min_p_all", c_float),
        ("repetition_penalty", c_void_p), ("repetition_penalty_all", c_float),
        ("presence_penalty", c_void_p), ("presence_penalty_all", c_float),
        ("frequency_penalty", c_void_p), ("frequency_penalty_all", c_float),
        ("seed", c_void_p), ("seed_all", c_uint64),
        ("offset", c_void_p), ("offset_all", c_uint64),
        ("dynatemp_range", c_void_p), ("dynatemp_range_all", c_float),
        ("dynatemp_exponent", c_void_p), ("dynatemp_exponent_all", c_float),
    ]

    def __init__(self):
        # KILN_SAMPLING_PARAMS_INIT
        super().__init__(ctypes.sizeof(SamplingParams), None, 1.0, None, 0, None, 1.0, None, 0.0,
                         None, 1.0, None, 0.0, None, 0.0, None, 0, None, 0, None, 0.0, None, 1.0)


class Outputs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("tokens", c_void_p),        # int32_t *
        ("logprobs", c_void_p),      # float *
        ("raw_logprobs", c_void_p),  # float *
        ("probs", c_void_p),         # float *
        ("probs_row_stride", c_int64),
        ("kept_counts", c_void_p),   # int32_t *
        ("valid", c_void_p),         # uint8_t *
        ("num_top_logprobs", c_int32),
        ("raw_top_ids", c_void_p),         # int32_t *
        ("raw_top_logprobs", c_void_p),    # float *
        ("final_top_ids", c_void_p),       # int32_t *
        ("final_top_logprobs", c_void_p),  # float *
        ("raw_ranks", c_void_p),           # int32_t *
        ("entropy", c_void_p),             # float *
        ("raw_entropy", c_void_p),         # float *
        ("temperatures", c_void_p),        # float *
    ]

    def __init__(self):
        # KILN_OUTPUTS_INIT
        super().__init__(ctypes.sizeof(Outputs), None, None, None, None, 0, None, None, 0, None,
                         None, None, None, None, None, None, None)


class ScoreOutputs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("logprobs", c_void_p),      # float *
        ("ranks", c_void_p),         # int32_t *
        ("num_top_logprobs", c_int32),
        ("top_ids", c_void_p),       # int32_t *
        ("top_logprobs", c_void_p),  # float *
        ("entropy", c_void_p),       # float *
        ("valid", c_void_p),         # uint8_t *
    ]

    def __init__(self):
        # KILN_SCORE_OUTPUTS_INIT
        super().__init__(ctypes.sizeof(ScoreOutputs), None, None, 0, None, None, None, None)


class Drafts(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("max_drafts", c_int32),
        ("draft_ids", c_void_p),     # const int32_t *
        ("num_drafts", c_void_p),    # const int32_t *
        ("draft_probs", c_void_p),   # const float *
        ("draft_probs_stride", c_int64),
    ]

    def __init__(self):
        # KILN_DRAFTS_INIT
        super().__init__(ctypes.sizeof(Drafts), 0, None, None, None, 0)


class VerifyOutputs(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("tokens", c_void_p),        # int32_t *
        ("num_accepted", c_void_p),  # int32_t *
        ("logprobs", c_void_p),      # float *
        ("valid", c_void_p),         # uint8_t *
    ]

    def __init__(self):
        # KILN_VERIFY_OUTPUTS_INIT
        super().__init__(ctypes.sizeof(VerifyOutputs), None, None, None, None)


class LmHead(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("dtype", c_int),
        ("hidden", c_void_p),        # const void *
        ("hidden_size", c_int64),
        ("hidden_stride", c_int64),
        ("weight", c_void_p),        # const void *
        ("bias", c_void_p),          # const float *
        ("logits_dtype", c_int),
    ]

    def __init__(self):
        # KILN_LM_HEAD_INIT
        super().__init__(ctypes.sizeof(LmHead), DTYPE_F32, None, 0, 0, None, None, DTYPE_F32)


# Every public struct of kiln.h, by its C name (the layout test walks these).
STRUCTS = {"kiln_config": Config, "kiln_batch": Batch, "kiln_sampling_params": SamplingParams,
           "kiln_outputs": Outputs, "kiln_score_outputs": ScoreOutputs, "kiln_drafts": Drafts,
           "kiln_verify_outputs": VerifyOutputs, "kiln_lm_head": LmHead}


# ------------------------------------------------------------- the library
class KilnError(RuntimeError):
    """A kiln call failed. ``str(e)`` is kiln's message (kiln_last_error(),
    e.g. "top_p[17] = 1.5 is outside (0, 1]"); ``e.status`` the kiln_status
    value and ``e.status_name`` its name (e.g. "KILN_ERROR_INVALID_PARAMETER")."""

    def __init__(self, status, message, status_string=""):
        self.status = int(status)
        self.status_string = status_string
        self.status_name = status_string.split(":", 1)[0] if status_string else ""
        self.message = message
        super().__init__(message or status_string)


def _candidates():
    env = os.environ.get("KILN_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    names = ["libkiln.so", "libkiln.so.0", "libkiln.dylib", "kiln.dll"]
    paths = [os.path.join(here, n) for n in names]
    # Run from a source checkout: the library scripts/test builds.
    paths.append(os.path.join(here, "..", "..", "build", "libkiln.so"))
    import ctypes.util
    found = ctypes.util.find_library("kiln")
    return [p for p in paths if os.path.exists(p)] + ([found] if found else []) + ["libkiln.so.0"]


def _load():
    errors = []
    for path in _candidates():
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append(f"{path}: {e}")
    raise ImportError(
        "kiln: cannot load the kiln shared library. Install the package with "
        "`pip install ./python` (it builds libkiln.so), or set KILN_LIBRARY to the path of "
        "an existing libkiln.so.\n  " + "\n  ".join(errors))


lib, library_path = _load()

lib.kiln_status_string.argtypes = [c_int]
lib.kiln_status_string.restype = c_char_p
lib.kiln_last_error.argtypes = []
lib.kiln_last_error.restype = c_char_p
lib.kiln_version_number.argtypes = []
lib.kiln_version_number.restype = c_uint
lib.kiln_version_string.argtypes = []
lib.kiln_version_string.restype = c_char_p
lib.kiln_sampler_create.argtypes = [POINTER(Config), POINTER(c_void_p)]
lib.kiln_sampler_create.restype = c_int
lib.kiln_sampler_destroy.argtypes = [c_void_p]
lib.kiln_sampler_destroy.restype = c_int
lib.kiln_sampler_workspace_size.argtypes = [c_void_p, POINTER(c_size_t)]
lib.kiln_sampler_workspace_size.restype = c_int
lib.kiln_sampler_backend.argtypes = [c_void_p, POINTER(c_int)]
lib.kiln_sampler_backend.restype = c_int
lib.kiln_sample.argtypes = [c_void_p, POINTER(Batch), POINTER(SamplingParams), POINTER(Outputs),
                            c_void_p, c_size_t, c_void_p]
lib.kiln_sample.restype = c_int
lib.kiln_best_of_n.argtypes = [c_void_p, c_void_p, c_int64, c_int32, c_void_p, c_void_p]
lib.kiln_best_of_n.restype = c_int
lib.kiln_score.argtypes = [c_void_p, POINTER(Batch), POINTER(SamplingParams), c_void_p, c_int32,
                           POINTER(ScoreOutputs), c_void_p, c_size_t, c_void_p]
lib.kiln_score.restype = c_int
lib.kiln_verify_drafts.argtypes = [c_void_p, POINTER(Batch), POINTER(SamplingParams),
                                   POINTER(Drafts), POINTER(VerifyOutputs), c_void_p, c_size_t,
                                   c_void_p]
lib.kiln_verify_drafts.restype = c_int
lib.kiln_sample_hidden.argtypes = [c_void_p, POINTER(LmHead), POINTER(Batch),
                                   POINTER(SamplingParams), POINTER(Outputs), c_void_p, c_size_t,
                                   c_void_p]
lib.kiln_sample_hidden.restype = c_int


def status_string(status):
    return lib.kiln_status_string(int(status)).decode()


def check(status):
    """Raises KilnError for a failed call. kiln_last_error() is thread-local
    and ctypes calls run on the calling thread, so the message is this call's."""
    if status != SUCCESS:
        raise KilnError(status, lib.kiln_last_error().decode(), status_string(status))


def version_number():
    return int(lib.kiln_version_number())


def version_string():
    return lib.kiln_version_string().decode()


__all__ = ["KilnError", "lib", "library_path", "check", "status_string", "Config", "Batch",
           "SamplingParams", "Outputs", "ScoreOutputs", "Drafts", "VerifyOutputs", "LmHead",
           "STRUCTS"]

if sys.byteorder != "little":  # pragma: no cover
    raise ImportError("kiln's Python bindings assume a little-endian machine")
