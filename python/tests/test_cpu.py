"""kiln's Python package on the CPU backend with NumPy arrays: known
answers, the exact bytes of a direct C API call, parameters as scalars and
as arrays, zero-copy input, errors as KilnError with kiln's message."""
import re
import threading

import numpy as np
import pytest

import kiln
from conftest import EFFORT, c_sample, same_bytes, zipf_rows


# --------------------------------------------------------- known answers
def test_version():
    assert kiln.version_number() == 10000 * int(kiln.__version__.split(".")[0]) + \
        100 * int(kiln.__version__.split(".")[1]) + int(kiln.__version__.split(".")[2])


def test_greedy_picks_forward():
    logits = np.stack([EFFORT] * 4)
    tokens = kiln.greedy(logits)
    assert isinstance(tokens, np.ndarray) and tokens.dtype == np.int32 and tokens.shape == (4,)
    assert tokens.tolist() == [3, 3, 3, 3]  # "forward"


def test_top_k_keeps_three_and_probs_are_softmax():
    r = kiln.sample(EFFORT[None, :], temperature=1.0, top_k=3, seed=5, num_samples=256,
                    return_probs=True, return_logprobs=True)
    assert set(r.tokens.ravel().tolist()) <= {0, 3, 7}
    assert r.kept_counts.tolist() == [3] and r.valid.tolist() == [1]
    x = EFFORT.astype(np.float64)
    e = np.exp(x[[0, 3, 7]] - x.max())
    want = np.zeros(9)
    want[[0, 3, 7]] = e / e.sum()
    assert np.allclose(r.probs[0], want, atol=2e-6)
    assert np.allclose(r.logprobs[0], np.log(want[r.tokens[0]]), atol=4e-6)


def test_temperature_table():
    # P = (0.5, 0.3, 0.15, 0.05) at T = 0.5 is P^2 normalised.
    P = np.array([0.5, 0.3, 0.15, 0.05])
    r = kiln.sample(np.log(P).astype(np.float32), temperature=0.5, seed=1, return_probs=True)
    assert np.allclose(r.probs, P**2 / (P**2).sum(), atol=2e-6)


def test_invalid_row_is_minus_one_and_neighbours_untouched():
    logits = np.stack([EFFORT, EFFORT, EFFORT])
    logits[1, 4] = np.nan
    r = kiln.sample(logits, temperature=0.0)
    assert r.tokens.tolist() == [3, -1, 3] and r.valid.tolist() == [1, 0, 1]
    with pytest.raises(kiln.KilnError, match="row 1"):
        kiln.top_k_top_p_sampling_from_logits(logits, 0, 1.0, seed=0, check_nan=True)


# ------------------------------------------------ the same bytes as C
CASES = [
    dict(temperature=0.7, top_k=50, top_p=0.9, seed=1234, offset=0),
    dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.05, seed=2**64 - 1, offset=17),
    dict(temperature=0.0, top_k=0, top_p=1.0, seed=0, offset=0),
    dict(temperature=1.3, top_k=7, top_p=0.5, repetition=1.3, presence=0.5, frequency=0.25,
         seed=99, offset=3),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("per_row", [False, True])
def test_same_bytes_as_the_c_api(case, per_row):
    B, V, n = 7, 1000, 4
    logits = zipf_rows(B, V, 11)
    history = [list(range(r, r + 5 * r, 5)) for r in range(B)]  # row r: r tokens
    want = c_sample(logits, n=n, history=history, prompt_lengths=[r // 2 for r in range(B)],
                    **case)
    c = dict(case)
    rep, pres, freq = c.pop("repetition", 1.0), c.pop("presence", 0.0), c.pop("frequency", 0.0)
    kw = dict(repetition_penalty=rep, presence_penalty=pres, frequency_penalty=freq, **c)
    kw.setdefault("min_p", 0.0)
    if per_row:  # the same values as arrays of B, in every accepted dtype
        kw = {k: np.full(B, v, dtype=np.uint64 if k in ("seed", "offset") else
                         np.int64 if k == "top_k" else np.float64) for k, v in kw.items()}
    r = kiln.sample(logits, num_samples=n, history=history,
                    prompt_lengths=[r // 2 for r in range(B)], return_logprobs=True,
                    return_raw_logprobs=True, return_probs=True, **kw)
    for name in ("tokens", "logprobs", "raw_logprobs", "probs", "kept_counts", "valid"):
        assert same_bytes(getattr(r, name), want[name]), name


def test_per_row_parameters_differ_per_row():
    B, V = 5, 300
    logits = zipf_rows(B, V, 3)
    temps = np.array([0.0, 0.5, 1.0, 1.5, 2.0], np.float32)
    ks = np.array([0, 1, 10, 100, 1000], np.int32)
    seeds = np.arange(B, dtype=np.uint64) * 77
    r = kiln.sample(logits, temperature=temps, top_k=ks, top_p=0.95, seed=seeds, offset=5,
                    return_probs=True)
    want = c_sample(logits, temperature=temps, top_k=ks, top_p=0.95, seed=seeds, offset=5)
    assert same_bytes(r.tokens, want["tokens"][:, 0])
    assert same_bytes(r.probs, want["probs"])
    # each row alone gives its bytes in the batch (batch invariance)
    for b in range(B):
        one = kiln.sample(logits[b:b + 1], temperature=temps[b], top_k=int(ks[b]), top_p=0.95,
                          seed=int(seeds[b]), offset=5)
        assert one.tokens[0] == r.tokens[b]


def test_flashinfer_shaped_call_matches_sample():
    logits = zipf_rows(9, 500, 4)
    t = kiln.top_k_top_p_sampling_from_logits(logits, 40, 0.8, temperature=0.9, seed=7, offset=2)
    r = kiln.sample(logits, top_k=40, top_p=0.8, temperature=0.9, seed=7, offset=2)
    assert same_bytes(t, r.tokens) and t.shape == (9,) and t.dtype == np.int32
    assert same_bytes(kiln.top_p_sampling_from_logits(logits, 0.8, seed=1),
                      kiln.sample(logits, top_p=0.8, seed=1).tokens)
    assert same_bytes(kiln.top_k_sampling_from_logits(logits, 5, seed=1),
                      kiln.sample(logits, top_k=5, seed=1).tokens)
    assert same_bytes(kiln.min_p_sampling_from_logits(logits, 0.1, seed=1),
                      kiln.sample(logits, min_p=0.1, seed=1).tokens)
    assert same_bytes(kiln.sampling_from_logits(logits, seed=1),
                      kiln.sample(logits, seed=1).tokens)


def test_seed_and_offset_semantics():
    logits = zipf_rows(16, 2000, 5)
    a = kiln.sample(logits, seed=3, offset=0).tokens
    assert same_bytes(a, kiln.sample(logits, seed=3, offset=0).tokens)
    assert not same_bytes(a, kiln.sample(logits, seed=3, offset=1).tokens)
    # seed=None: a fresh seed per call
    assert not same_bytes(kiln.sample(logits).tokens, kiln.sample(logits).tokens)
    # 64-bit seeds: -1 is 2^64 - 1, and int64 arrays are read as the same bits
    assert same_bytes(kiln.sample(logits, seed=-1).tokens,
                      kiln.sample(logits, seed=2**64 - 1).tokens)
    assert same_bytes(kiln.sample(logits, seed=np.full(16, -1, np.int64)).tokens,
                      kiln.sample(logits, seed=2**64 - 1).tokens)
    assert same_bytes(kiln.sample(logits, seed=[-1] * 16).tokens,
                      kiln.sample(logits, seed=2**64 - 1).tokens)
    mixed = [-1, 2**63, 5, 2**64 - 1] * 4  # NumPy alone would make this list float64
    assert same_bytes(kiln.sample(logits, seed=mixed).tokens,
                      kiln.sample(logits, seed=np.array([x % 2**64 for x in mixed],
                                                        np.uint64)).tokens)


# ------------------------------------------------------- shapes, dtypes
def test_one_dimensional_logits():
    r = kiln.sample(EFFORT, temperature=0.0, return_probs=True)
    assert r.tokens.shape == () and int(r.tokens) == 3 and r.probs.shape == (9,)


def test_strided_rows_are_read_in_place():
    wide = zipf_rows(6, 700, 8)
    view = wide[:, :500]  # row stride 700
    assert not view.flags.c_contiguous
    a = kiln.sample(view, top_p=0.9, seed=4, return_probs=True)
    b = kiln.sample(np.ascontiguousarray(view), top_p=0.9, seed=4, return_probs=True)
    assert same_bytes(a.tokens, b.tokens) and same_bytes(a.probs, b.probs)


def test_float16_is_read_exactly():
    x16 = zipf_rows(5, 400, 9).astype(np.float16)
    a = kiln.sample(x16, top_k=20, seed=2, return_logprobs=True)
    b = kiln.sample(x16.astype(np.float32), top_k=20, seed=2, return_logprobs=True)
    assert same_bytes(a.tokens, b.tokens) and same_bytes(a.logprobs, b.logprobs)


def test_history_as_lists_and_as_csr():
    logits = np.stack([EFFORT] * 2)
    hist = [[3, 7], [3]]
    a = kiln.sample(logits, temperature=0.0, repetition_penalty=2.0, history=hist)
    # forward (6.75 -> 3.375) and toward (6.28 -> 3.14) penalised: closer (4.51) wins
    assert a.tokens.tolist() == [0, 7]
    offs, ids = np.array([0, 2, 3], np.int64), np.array([3, 7, 3], np.int32)
    b = kiln.sample(logits, temperature=0.0, repetition_penalty=2.0, history_offsets=offs,
                    history_ids=ids)
    assert same_bytes(a.tokens, b.tokens)


def test_num_samples_shape_and_best_of_n():
    r = kiln.sample(zipf_rows(3, 50, 1), num_samples=5, seed=1, return_logprobs=True)
    assert r.tokens.shape == (3, 5) and r.logprobs.shape == (3, 5)
    best = kiln.best_of_n(r.logprobs)
    assert best.tolist() == np.argmax(r.logprobs, axis=1).tolist()
    assert kiln.best_of_n(np.array([[np.nan, np.nan], [1, 1]], np.float32)).tolist() == [-1, 0]


def test_logits_are_not_modified():
    logits = zipf_rows(4, 100, 2)
    before = logits.copy()
    kiln.sample(logits, repetition_penalty=1.5, history=[[1, 2], [3], [], [4]], seed=0)
    assert same_bytes(logits, before)


# ------------------------------------------------------------ zero-copy
class DLPackOnly:
    """An array that offers nothing but DLPack, like an unknown library."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, **kw):
        return self.a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_dlpack_capsule_is_read_in_place():
    from kiln._tensors import view
    logits = zipf_rows(4, 300, 6)
    v = view(DLPackOnly(logits))
    assert v.ptr == logits.ctypes.data and v.shape == (4, 300) and v.dtype == "float32"
    a = kiln.sample(DLPackOnly(logits), top_k=30, seed=9, return_probs=True)
    b = kiln.sample(logits, top_k=30, seed=9, return_probs=True)
    assert isinstance(a.tokens, np.ndarray)
    assert same_bytes(a.tokens, b.tokens) and same_bytes(a.probs, b.probs)


def test_parameters_from_other_array_kinds():
    logits = zipf_rows(3, 100, 7)
    a = kiln.sample(logits, top_p=DLPackOnly(np.array([0.5, 0.9, 1.0], np.float32)), seed=1)
    b = kiln.sample(logits, top_p=[0.5, 0.9, 1.0], seed=1)
    c = kiln.sample(logits, top_p=(0.5, 0.9, 1.0), seed=np.uint64(1))
    assert same_bytes(a.tokens, b.tokens) and same_bytes(b.tokens, c.tokens)


# ---------------------------------------------------------------- errors
def test_errors_carry_kiln_message():
    logits = np.stack([EFFORT] * 3)
    with pytest.raises(kiln.KilnError) as e:
        kiln.sample(logits, top_p=[1.0, 1.5, 1.0])
    assert "top_p[1] = 1.5" in str(e.value)
    assert e.value.status == 3 and e.value.status_name == "KILN_ERROR_INVALID_PARAMETER"
    with pytest.raises(kiln.KilnError, match="temperature"):
        kiln.sample(logits, temperature=-1.0)
    with pytest.raises(kiln.KilnError, match="min_p"):
        kiln.sample(logits, min_p=2.0)
    with pytest.raises(kiln.KilnError) as e:
        kiln.sample(logits, history=[[0], [99], []])  # id outside [0, V)
    assert e.value.status_name == "KILN_ERROR_INVALID_PARAMETER"


def test_python_side_errors():
    with pytest.raises(ValueError, match="expected"):
        kiln.sample(np.stack([EFFORT] * 3), top_k=[1, 2])
    with pytest.raises(ValueError):
        kiln.sample(np.zeros((2, 2, 2), np.float32))
    with pytest.raises(TypeError):
        kiln.sample(np.zeros((2, 4), np.int32))
    with pytest.raises(TypeError):
        kiln.sample("not a tensor")
    with pytest.raises(ValueError, match="algorithm"):
        kiln.sample(np.zeros((2, 4), np.float32), algorithm="fastest")


# -------------------------------------------------- threads, the cache
def test_threads_get_their_own_samplers():
    logits = zipf_rows(8, 3000, 12)
    want = kiln.sample(logits, top_p=0.9, seed=5).tokens
    got, errors = [], []

    def work():
        try:
            for _ in range(20):
                got.append(kiln.sample(logits, top_p=0.9, seed=5).tokens)
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 80 and all(same_bytes(g, want) for g in got)


def test_limits_grow():
    kiln.clear_cache()
    for B, V in [(1, 10), (3, 100), (2, 5000), (40, 129)]:
        r = kiln.sample(zipf_rows(B, V, B), temperature=0.0)
        assert same_bytes(r.tokens, c_sample(zipf_rows(B, V, B), temperature=0.0, top_k=0,
                                             top_p=1.0, seed=0, offset=0)["tokens"][:, 0])


# ------------------------------------- integer inputs never wrap (issue 16)
def _two_peaks():
    x = np.zeros((1, 8), np.float32)
    x[0, 3] = 2
    x[0, 5] = 1
    return x


def test_history_id_past_int32_is_rejected_not_wrapped():
    x = _two_peaks()
    with pytest.raises(ValueError, match=r"history\[0\]\[0\] = 4294967299 is outside \[-2147483648, 2147483647\]"):
        kiln.sample(x, temperature=0, repetition_penalty=100., history=[[2**32 + 3]], seed=1)
    with pytest.raises(ValueError, match=r"history\[0\]\[1\] = -4294967296 is outside"):
        kiln.sample(x, temperature=0, repetition_penalty=100., history=[[3, -2**32]], seed=1)
    with pytest.raises(ValueError, match=r"history_ids\[0\] = 4294967299 is outside"):
        kiln.sample(x, temperature=0, repetition_penalty=100., history_offsets=[0, 1],
                    history_ids=[2**32 + 3], seed=1)
    with pytest.raises(ValueError, match=r"history_ids\[0\] = 4294967299 is outside"):
        kiln.sample(x, temperature=0, repetition_penalty=100., history_offsets=[0, 1],
                    history_ids=np.array([2**32 + 3], np.int64), seed=1)
    with pytest.raises(ValueError, match=r"history_offsets\[1\] = 18446744073709551615 is outside"):
        kiln.sample(x, temperature=0, repetition_penalty=100.,
                    history_offsets=np.array([0, 2**64 - 1], np.uint64), history_ids=[3], seed=1)
    # in range, the id is the id: token 3 is penalised and 5 wins
    assert kiln.sample(x, temperature=0, repetition_penalty=100., history=[[3]],
                       seed=1).tokens.tolist() == [5]


def test_prompt_length_past_int32_is_rejected():
    x = _two_peaks()
    for pl in ([2**32 + 1], 2**32 + 1, np.array([2**32 + 1], np.int64)):
        with pytest.raises(ValueError, match=r"prompt_lengths(\[0\])? = 4294967297 is outside"):
            kiln.sample(x, temperature=0, frequency_penalty=100., history=[[3]],
                        prompt_lengths=pl, seed=1)


def test_top_k_beyond_int32_means_the_same_as_array_and_scalar():
    x = zipf_rows(3, 64, 2)
    # kiln.h: k >= V disables top-k; so does any k past int32, scalar or array
    off = kiln.sample(x, top_k=0, seed=4, return_probs=True)
    for k in (2**32 + 1, [2**32 + 1] * 3, np.array([2**32 + 1] * 3), np.array([2**63 - 1] * 3),
              np.array([2**64 - 1] * 3, np.uint64), [2**70] * 3):
        r = kiln.sample(x, top_k=k, seed=4, return_probs=True)
        assert same_bytes(r.tokens, off.tokens) and same_bytes(r.probs, off.probs), k
        assert r.kept_counts.tolist() == [64] * 3
    # and past the negative end: k <= 0 disables too
    r = kiln.sample(x, top_k=np.array([-2**40] * 3), seed=4, return_probs=True)
    assert same_bytes(r.probs, off.probs)
    with pytest.raises(ValueError, match=r"top_k\[1\] = 2.5 is not an integer"):
        kiln.sample(x, top_k=[1, 2.5, 3])
    with pytest.raises(ValueError, match=r"top_k = 2.5 is not an integer"):
        kiln.sample(x, top_k=2.5)


def test_seed_and_offset_outside_64_bits_are_rejected():
    x = zipf_rows(2, 16, 3)
    for name in ("seed", "offset"):
        for v, label in ((2**64, name), ([1, 2**64], f"{name}[1]"), ([-2**63 - 1, 0], f"{name}[0]"),
                         (-2**63 - 1, name)):
            with pytest.raises(ValueError, match=re.escape(label) + r" = -?\d+ is outside"):
                kiln.sample(x, **{name: v})
    # the 64-bit range itself, with int64 negatives as the same bits
    assert same_bytes(kiln.sample(x, seed=[-2**63, -1]).tokens,
                      kiln.sample(x, seed=np.array([2**63, 2**64 - 1], np.uint64)).tokens)
    assert same_bytes(kiln.sample(x, seed=1, offset=-1).tokens,
                      kiln.sample(x, seed=1, offset=2**64 - 1).tokens)


def test_num_samples_and_threads_are_checked():
    x = zipf_rows(1, 16, 3)
    with pytest.raises(ValueError, match=r"num_samples = 4294967297 is outside \[1, 2147483647\]"):
        kiln.sample(x, num_samples=2**32 + 1)
    with pytest.raises(ValueError, match=r"num_samples = 0 is outside"):
        kiln.sample(x, num_samples=0)
    with pytest.raises(ValueError, match=r"num_samples = 1.5 is not an integer"):
        kiln.sample(x, num_samples=1.5)
    with pytest.raises(ValueError, match=r"num_threads = 4294967297 is outside"):
        kiln.sample(x, num_threads=2**32 + 1)
