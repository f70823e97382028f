"""The newer parts of kiln.h through the package: the allowed-token mask,
logit bias, top-N log-probabilities and ranks, entropy, dynatemp,
kiln.score and kiln.verify_drafts. Known answers come from float64 NumPy
computed here; identities (bias == editing the logits yourself, dynatemp
range 0 == plain temperature, verify with no drafts == sample) are checked
byte for byte."""
import re

import numpy as np
import pytest

import kiln
from conftest import EFFORT, same_bytes, zipf_rows


# ------------------------------------------------------------ float64 helpers
def log_softmax64(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def canonical_order(row):
    """Token ids by descending logit, ties to the lower id."""
    row = np.asarray(row, np.float64)
    return np.lexsort((np.arange(row.shape[0]), -row))


def entropy64(logp):
    p = np.exp(logp)
    return float(-(p[p > 0] * logp[p > 0]).sum())


def pack_words(mask):
    """bool [B, V] -> int32 words, written the slow way (bit j % 32 of word j // 32)."""
    B, V = mask.shape
    W = (V + 31) // 32
    out = np.zeros((B, W), np.int64)
    for b in range(B):
        for j in range(V):
            if mask[b, j]:
                out[b, j // 32] |= 1 << (j % 32)
    return (out & 0xFFFFFFFF).astype(np.uint32).view(np.int32)


def tied_rows(rows, vocab, seed):
    """Logits on a coarse grid, so that many tokens tie."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-8, 8, (rows, vocab)) * 0.5).astype(np.float32)


# ------------------------------------------------------------------- the mask
def test_masked_tokens_are_never_drawn_and_have_no_probability():
    B, V = 4, 100
    x = zipf_rows(B, V, 31)
    rng = np.random.default_rng(1)
    mask = rng.random((B, V)) < 0.3
    mask[:, 0] = True
    r = kiln.sample(x, allowed_mask=mask, seed=3, num_samples=512, return_probs=True)
    for b in range(B):
        assert set(r.tokens[b].tolist()) <= set(np.flatnonzero(mask[b]).tolist())
    assert (r.probs[~mask] == 0).all()
    want = np.where(mask, np.exp(log_softmax64(np.where(mask, x, -np.inf))), 0)
    assert np.allclose(r.probs, want, atol=2e-6)
    assert r.kept_counts.tolist() == mask.sum(1).tolist()


def test_bool_mask_and_word_mask_give_the_same_bytes():
    B, V = 3, 77  # 3 words, the last one partial
    x = zipf_rows(B, V, 32)
    mask = np.random.default_rng(2).random((B, V)) < 0.5
    mask[:, 5] = True
    mask[1, 31] = True  # the sign bit of word 0
    words = pack_words(mask)
    a = kiln.sample(x, allowed_mask=mask, seed=9, num_samples=8, return_probs=True)
    b = kiln.sample(x, allowed_mask=words, seed=9, num_samples=8, return_probs=True)
    assert same_bytes(a.tokens, b.tokens) and same_bytes(a.probs, b.probs)
    # uint32 words, lists of (unsigned) ints, and strided rows of wider buffers
    c = kiln.sample(x, allowed_mask=words.view(np.uint32), seed=9, num_samples=8,
                    return_probs=True)
    d = kiln.sample(x, allowed_mask=words.view(np.uint32).astype(np.int64).tolist(), seed=9,
                    num_samples=8, return_probs=True)
    wide = np.zeros((B, 8), np.int32)
    wide[:, :3] = words
    e = kiln.sample(x, allowed_mask=wide[:, :5], seed=9, num_samples=8, return_probs=True)
    f = kiln.sample(x, allowed_mask=mask.tolist(), seed=9, num_samples=8, return_probs=True)
    for r in (c, d, e, f):
        assert same_bytes(r.tokens, a.tokens) and same_bytes(r.probs, a.probs)
    # one row's words broadcast to every row (stride 0) is copied, not misread
    one = kiln.sample(x, allowed_mask=np.broadcast_to(words[1], (B, 3)), seed=9,
                      return_probs=True)
    assert same_bytes(one.probs, kiln.sample(x, allowed_mask=np.stack([words[1]] * B), seed=9,
                                             return_probs=True).probs)


def test_mask_bits_past_v_are_ignored_and_an_empty_row_is_invalid():
    x = np.stack([EFFORT] * 2)
    words = np.array([[-1], [0]], np.int32)  # row 0 all allowed (bits past 9 too), row 1 none
    r = kiln.sample(x, allowed_mask=words, temperature=0.0)
    assert r.tokens.tolist() == [3, -1] and r.valid.tolist() == [1, 0]


def test_mask_with_one_dimensional_logits():
    allowed = np.zeros(9, bool)
    allowed[[0, 8]] = True
    r = kiln.sample(EFFORT, allowed_mask=allowed, temperature=0.0)
    assert int(r.tokens) == 0  # closer (4.51) beats you (1.79)
    assert int(kiln.sample(EFFORT, allowed_mask=pack_words(allowed[None])[0],
                           temperature=0.0).tokens) == 0


def test_mask_errors_name_the_argument():
    x = zipf_rows(2, 70, 3)
    with pytest.raises(ValueError,
                       match=r"allowed_mask has shape \(2, 2\), expected \(2, W >= 3\)"):
        kiln.sample(x, allowed_mask=np.zeros((2, 2), np.int32))
    with pytest.raises(ValueError, match=r"allowed_mask \(bool\) has shape \(2, 69\)"):
        kiln.sample(x, allowed_mask=np.ones((2, 69), bool))
    with pytest.raises(ValueError, match=r"allowed_mask has shape \(3, 3\)"):
        kiln.sample(x, allowed_mask=np.zeros((3, 3), np.int32))
    with pytest.raises(TypeError, match="allowed_mask dtype float32"):
        kiln.sample(x, allowed_mask=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"allowed_mask\[1\]\[2\] = 4294967296 is outside"):
        kiln.sample(x, allowed_mask=[[0, 0, 0], [0, 0, 2**32]])


# -------------------------------------------------------------- logit bias
def test_bias_equals_editing_the_logits_yourself():
    B, V = 5, 300
    x = zipf_rows(B, V, 41)
    bias = [{3: 2.5, 17: -1.25}, {}, None, {0: 10.0, 299: -100.0, 5: 0.1}, {3: -0.5}]
    edited = x.copy()
    for b, d in enumerate(bias):
        for t, v in (d or {}).items():
            edited[b, t] = np.float32(edited[b, t] + np.float32(v))
    kw = dict(temperature=0.9, top_p=0.95, seed=12, offset=4, num_samples=6,
              return_logprobs=True, return_raw_logprobs=True, return_probs=True)
    a = kiln.sample(x, logit_bias=bias, **kw)
    b = kiln.sample(edited, **kw)
    for name in ("tokens", "logprobs", "raw_logprobs", "probs", "kept_counts", "valid"):
        assert same_bytes(getattr(a, name), getattr(b, name)), name


def test_one_dict_applies_to_every_row():
    x = np.stack([EFFORT] * 3)
    r = kiln.sample(x, logit_bias={3: -100.0, 7: -100.0}, temperature=0.0)
    assert r.tokens.tolist() == [0, 0, 0]  # forward and toward banned: closer
    edited = x.copy()
    edited[:, [3, 7]] += np.float32(-100.0)
    assert same_bytes(kiln.sample(x, logit_bias={3: -100.0, 7: -100.0}, seed=1,
                                  return_probs=True).probs,
                      kiln.sample(edited, seed=1, return_probs=True).probs)


def test_bias_errors_are_kiln_errors_with_its_message():
    x = np.stack([EFFORT] * 2)
    with pytest.raises(kiln.KilnError) as e:
        kiln.sample(x, logit_bias=[{}, {99: 1.0}])
    assert "logit_bias_ids[0] = 99 (row 1) is outside [0, 9)" in str(e.value)
    assert e.value.status_name == "KILN_ERROR_INVALID_PARAMETER"
    with pytest.raises(kiln.KilnError, match="logit_bias_ids.* = -1"):
        kiln.sample(x, logit_bias={-1: 1.0})
    with pytest.raises(kiln.KilnError, match="logit_bias_values"):
        kiln.sample(x, logit_bias={2: float("inf")})
    with pytest.raises(ValueError, match=r"logit_bias\[1\] id = 4294967296 is outside"):
        kiln.sample(x, logit_bias=[{}, {2**32: 1.0}])
    with pytest.raises(ValueError, match=r"logit_bias has 3 rows, expected 2"):
        kiln.sample(x, logit_bias=[{}, {}, {}])
    with pytest.raises(TypeError, match=r"logit_bias\[0\] must be a dict"):
        kiln.sample(x, logit_bias=[[1, 2], {}])
    with pytest.raises(ValueError, match=r"logit_bias\[0\]\[2\] = 'a' is not a number"):
        kiln.sample(x, logit_bias={2: "a"})


# ------------------------------------------------------- top-N and ranks
def test_raw_top_n_is_the_float64_canonical_order():
    B, V, N = 4, 40, 12
    x = tied_rows(B, V, 5)
    r = kiln.sample(x, top_logprobs=N, seed=2, num_samples=16)
    lp = log_softmax64(x)
    for b in range(B):
        order = canonical_order(x[b])
        assert r.raw_top_ids[b].tolist() == order[:N].tolist()
        assert np.allclose(r.raw_top_logprobs[b], lp[b, order[:N]], atol=1e-5)
        rank = np.empty(V, np.int64)
        rank[order] = np.arange(1, V + 1)
        assert r.raw_ranks[b].tolist() == rank[r.tokens[b]].tolist()
    assert r.raw_top_ids.dtype == np.int32 and r.raw_top_logprobs.dtype == np.float32
    assert r.raw_ranks.shape == r.tokens.shape == (B, 16)


def test_final_top_n_is_the_kept_set_at_the_temperature():
    B, V, N, k, T = 3, 50, 8, 5, 0.7
    x = tied_rows(B, V, 6)
    r = kiln.sample(x, top_logprobs=N, top_k=k, temperature=T, seed=1, return_logprobs=True)
    for b in range(B):
        order = canonical_order(x[b])
        kept = order[:k]
        assert r.final_top_ids[b].tolist() == kept.tolist() + [-1] * (N - k)
        want = log_softmax64(x[b, kept].astype(np.float64) / T)
        assert np.allclose(r.final_top_logprobs[b, :k], want, atol=1e-5)
        assert np.isneginf(r.final_top_logprobs[b, k:]).all()
    # the draw's own log-probability is among the final top-N
    for b in range(B):
        i = r.final_top_ids[b].tolist().index(int(r.tokens[b]))
        assert r.logprobs[b] == r.final_top_logprobs[b, i]


def test_top_n_past_the_vocabulary_is_padded_and_greedy_ranks_one():
    r = kiln.sample(EFFORT, top_logprobs=12, temperature=0.0)
    assert r.raw_top_ids.tolist()[:9] == canonical_order(EFFORT).tolist()
    assert r.raw_top_ids.tolist()[9:] == [-1] * 3 and np.isneginf(r.raw_top_logprobs[9:]).all()
    assert r.final_top_ids.tolist() == [3] + [-1] * 11 and r.final_top_logprobs[0] == 0
    assert int(r.raw_ranks) == 1


def test_top_logprobs_is_range_checked():
    x = zipf_rows(1, 16, 3)
    with pytest.raises(ValueError, match=r"top_logprobs = 1025 is outside \[0, 1024\]"):
        kiln.sample(x, top_logprobs=1025)
    with pytest.raises(ValueError, match=r"top_logprobs = -1 is outside"):
        kiln.score(x, [[1]], top_logprobs=-1)
    with pytest.raises(ValueError, match=r"top_logprobs = 2.5 is not an integer"):
        kiln.sample(x, top_logprobs=2.5)
    assert kiln.sample(x, top_logprobs=1024, seed=0).raw_top_ids.shape == (1, 1024)


# ----------------------------------------------------------------- entropy
def test_entropy_matches_float64():
    B, V, k, T = 6, 2000, 40, 0.8
    x = zipf_rows(B, V, 51)
    r = kiln.sample(x, top_k=k, temperature=T, seed=1, return_entropy=True)
    lp = log_softmax64(x)
    for b in range(B):
        raw = entropy64(lp[b])
        kept = canonical_order(x[b])[:k]
        final = entropy64(log_softmax64(x[b, kept].astype(np.float64) / T))
        assert abs(r.raw_entropy[b] - raw) <= 1e-5 * raw
        assert abs(r.entropy[b] - final) <= 1e-5 * final
    assert r.entropy.dtype == np.float32 and r.raw_entropy.shape == (B,)


def test_greedy_entropy_is_zero_and_invalid_is_nan():
    x = np.stack([EFFORT, EFFORT])
    x[1, 0] = np.nan
    r = kiln.sample(x, temperature=0.0, return_entropy=True)
    assert r.entropy[0] == 0 and np.isnan(r.entropy[1]) and np.isnan(r.raw_entropy[1])
    assert abs(r.raw_entropy[0] - entropy64(log_softmax64(EFFORT))) <= 1e-5
    one = kiln.sample(EFFORT, temperature=0.0, return_entropy=True)
    assert one.entropy.shape == () and one.raw_entropy == r.raw_entropy[0]


# ---------------------------------------------------------------- dynatemp
def test_dynatemp_range_zero_is_the_plain_temperature():
    B, V = 5, 500
    x = zipf_rows(B, V, 61)
    temps = np.array([0.0, 0.3, 0.7, 1.0, 1.6], np.float32)
    kw = dict(temperature=temps, top_p=0.9, seed=4, offset=2, num_samples=3,
              return_logprobs=True, return_probs=True, top_logprobs=4)
    a = kiln.sample(x, dynatemp_range=0.0, dynatemp_exponent=2.0, **kw)
    b = kiln.sample(x, **kw)
    for name in ("tokens", "logprobs", "probs", "final_top_logprobs"):
        assert same_bytes(getattr(a, name), getattr(b, name)), name
    assert same_bytes(a.temperatures, temps)


def test_dynatemp_temperature_follows_the_entropy():
    B, V = 4, 300
    x = zipf_rows(B, V, 62)
    T = np.array([0.5, 1.0, 1.0, 2.0], np.float32)
    d = np.array([0.5, 0.25, 1.5, 0.5], np.float32)
    e = np.array([1.0, 0.5, 2.0, 1.0], np.float32)
    r = kiln.sample(x, temperature=T, dynatemp_range=d, dynatemp_exponent=e, seed=1,
                    return_entropy=True)
    for b in range(B):
        ratio = min(1.0, entropy64(log_softmax64(x[b])) / np.log(V))
        lo, hi = max(0.0, float(T[b]) - float(d[b])), float(T[b]) + float(d[b])
        want = lo + (hi - lo) * ratio ** float(e[b])
        assert abs(r.temperatures[b] - want) <= 1e-5 * want
    # scalars mean the same as arrays of one value
    s = kiln.sample(x, temperature=1.0, dynatemp_range=0.25, dynatemp_exponent=0.5, seed=1)
    a = kiln.sample(x, temperature=np.ones(B), dynatemp_range=np.full(B, 0.25),
                    dynatemp_exponent=[0.5] * B, seed=1)
    assert same_bytes(s.temperatures, a.temperatures) and same_bytes(s.tokens, a.tokens)
    assert s.temperatures[1] == r.temperatures[1]


def test_temperatures_without_dynatemp_are_the_rows_own():
    x = np.stack([EFFORT] * 3)
    x[2, 1] = np.inf
    r = kiln.sample(x, temperature=[0.0, 0.75, 1.0], return_temperatures=True, seed=1)
    assert r.temperatures[:2].tolist() == [0.0, 0.75] and np.isnan(r.temperatures[2])


def test_dynatemp_errors_are_kiln_errors():
    x = zipf_rows(2, 20, 1)
    with pytest.raises(kiln.KilnError, match="dynatemp_range"):
        kiln.sample(x, dynatemp_range=-1.0)
    with pytest.raises(kiln.KilnError, match=r"dynatemp_exponent\[1\]"):
        kiln.sample(x, dynatemp_range=0.5, dynatemp_exponent=[1.0, 0.0])


def test_results_without_the_new_options_are_unchanged():
    r = kiln.sample(np.stack([EFFORT] * 2), temperature=0.0)
    assert r[:6] == (r.tokens, None, None, None, r.kept_counts, r.valid)
    assert r.raw_top_ids is None and r.entropy is None and r.temperatures is None


# ------------------------------------------------------------------- score
def test_score_matches_float64_log_softmax_and_ranks():
    B, V = 4, 60
    x = tied_rows(B, V, 71)
    targets = np.array([[0, 5, 59], [1, 1, -1], [30, -1, -1], [7, 8, 9]], np.int32)
    s = kiln.score(x, targets, top_logprobs=5)
    lp = log_softmax64(x)
    for b in range(B):
        order = canonical_order(x[b])
        rank = np.empty(V, np.int64)
        rank[order] = np.arange(1, V + 1)
        for k, t in enumerate(targets[b]):
            if t < 0:
                assert np.isnan(s.logprobs[b, k]) and s.ranks[b, k] == 0
            else:
                assert abs(s.logprobs[b, k] - lp[b, t]) <= 1e-5 and s.ranks[b, k] == rank[t]
        assert s.top_ids[b].tolist() == order[:5].tolist()
        assert np.allclose(s.top_logprobs[b], lp[b, order[:5]], atol=1e-5)
        assert abs(s.entropy[b] - entropy64(lp[b])) <= 1e-5 * entropy64(lp[b])
    assert s.valid.tolist() == [1] * B
    # ragged lists are padded with -1
    r = kiln.score(x, [[0, 5, 59], [1, 1], [30], [7, 8, 9]])
    assert same_bytes(r.logprobs, s.logprobs) and same_bytes(r.ranks, s.ranks)
    assert r.top_ids is None


def test_score_gives_sample_s_raw_bytes():
    B, V = 5, 400
    x = zipf_rows(B, V, 72)
    hist = [[1, 2, 3], [], [7], [7, 7, 9], [0]]
    mask = np.ones((B, V), bool)
    mask[:, 10:20] = False
    bias = {4: 1.5, 11: 3.0}
    common = dict(history=hist, prompt_lengths=[1, 0, 0, 2, 1], repetition_penalty=1.2,
                  presence_penalty=0.3, frequency_penalty=0.1, allowed_mask=mask,
                  logit_bias=bias)
    r = kiln.sample(x, temperature=0.9, top_k=30, seed=6, num_samples=4,
                    return_raw_logprobs=True, top_logprobs=7, return_entropy=True, **common)
    s = kiln.score(x, r.tokens, top_logprobs=7, **common)
    assert same_bytes(s.logprobs, r.raw_logprobs) and same_bytes(s.ranks, r.raw_ranks)
    assert same_bytes(s.top_ids, r.raw_top_ids) and same_bytes(s.top_logprobs, r.raw_top_logprobs)
    assert same_bytes(s.entropy, r.raw_entropy)


def test_score_one_dimensional_and_no_targets():
    s = kiln.score(EFFORT, [3, 7, -1])
    lp = log_softmax64(EFFORT)
    assert np.allclose(s.logprobs[:2], lp[[3, 7]], atol=1e-5) and s.ranks.tolist() == [1, 2, 0]
    assert s.entropy.shape == () and int(s.valid) == 1
    n = kiln.score(np.stack([EFFORT] * 2), None, top_logprobs=2)
    assert n.logprobs.shape == (2, 0) and n.top_ids.tolist() == [[3, 7], [3, 7]]


def test_score_errors():
    x = np.stack([EFFORT] * 2)
    with pytest.raises(kiln.KilnError, match=re.escape("targets[1] = 9 (row 1) is outside [0, 9)")):
        kiln.score(x, [[0], [9]])
    with pytest.raises(ValueError, match=r"targets\[1\]\[0\] = 4294967296 is outside"):
        kiln.score(x, [[0], [2**32]])
    with pytest.raises(ValueError, match=r"targets\[0\]\[1\] = 4294967296 is outside"):
        kiln.score(x, np.array([[0, 2**32], [0, 0]], np.int64))
    with pytest.raises(ValueError, match=r"targets has shape \(3, 1\), expected \(2, K\)"):
        kiln.score(x, np.zeros((3, 1), np.int32))


# ------------------------------------------------------------ verify_drafts
def _targets_for(B, K, V, seed):
    return zipf_rows(B * (K + 1), V, seed).reshape(B, K + 1, V)


@pytest.mark.parametrize("params", [dict(temperature=0.8, top_p=0.9),
                                    dict(temperature=0.0),
                                    dict(temperature=1.2, top_k=20, min_p=0.02),
                                    dict(temperature=0.7, dynatemp_range=0.3)])
def test_verify_with_no_drafts_is_sample(params):
    B, K, V = 6, 3, 500
    t = _targets_for(B, K, V, 81)
    drafts = np.random.default_rng(1).integers(0, V, (B, K)).astype(np.int32)
    seeds = np.arange(B, dtype=np.uint64) * 1000 + 7
    v = kiln.verify_drafts(t, drafts, num_drafts=0, seed=seeds, offset=11, **params)
    s = kiln.sample(np.ascontiguousarray(t[:, 0]), seed=seeds, offset=11, return_logprobs=True,
                    **params)
    assert same_bytes(v.tokens[:, 0], s.tokens) and same_bytes(v.logprobs[:, 0], s.logprobs)
    assert (v.tokens[:, 1:] == -1).all() and np.isnan(v.logprobs[:, 1:]).all()
    assert v.num_accepted.tolist() == [0] * B and v.valid.tolist() == [1] * B
    # K = 0 itself
    z = kiln.verify_drafts(np.ascontiguousarray(t[:, :1]), np.zeros((B, 0), np.int32),
                           seed=seeds, offset=11, **params)
    assert same_bytes(z.tokens[:, 0], s.tokens) and z.tokens.shape == (B, 1)


def test_verify_greedy_accepts_the_argmax_and_corrects_the_rest():
    B, K, V = 3, 4, 200
    t = _targets_for(B, K, V, 82)
    top = t.argmax(-1).astype(np.int32)  # [B, K + 1]
    drafts = top[:, :K].copy()
    drafts[1, 2] = (drafts[1, 2] + 1) % V  # request 1 rejected at position 2
    v = kiln.verify_drafts(t, drafts, temperature=0.0, seed=0)
    assert v.num_accepted.tolist() == [K, 2, K]
    assert v.tokens[0].tolist() == top[0].tolist()  # all drafts, then the bonus
    assert v.tokens[1].tolist() == top[1, :3].tolist() + [-1, -1]
    assert v.tokens.dtype == np.int32 and v.logprobs[0].tolist() == [0.0] * (K + 1)


def test_verify_one_hot_draft_probs_are_no_draft_probs():
    B, K, V = 4, 3, 300
    t = _targets_for(B, K, V, 83)
    rng = np.random.default_rng(3)
    drafts = rng.integers(0, 20, (B, K)).astype(np.int32)
    q = np.zeros((B, K, V), np.float32)
    for b in range(B):
        for i in range(K):
            q[b, i, drafts[b, i]] = 1.0
    kw = dict(temperature=1.0, top_k=50, seed=np.arange(B, dtype=np.uint64), offset=3)
    a = kiln.verify_drafts(t, drafts, num_drafts=[3, 2, 1, 0], draft_probs=q, **kw)
    b = kiln.verify_drafts(t, drafts, num_drafts=[3, 2, 1, 0], **kw)
    for name in ("tokens", "num_accepted", "logprobs", "valid"):
        assert same_bytes(getattr(a, name), getattr(b, name)), name
    assert (a.num_accepted <= np.array([3, 2, 1, 0])).all()
    # ragged lists of drafts set num_drafts from their lengths
    c = kiln.verify_drafts(t, [d[:n].tolist() for d, n in zip(drafts, [3, 2, 1, 0])], **kw)
    assert same_bytes(c.tokens, b.tokens)


def test_verify_history_mask_and_bias_are_per_request():
    B, K, V = 2, 2, 64
    t = _targets_for(B, K, V, 84)
    mask = np.ones((B, K + 1, V), bool)
    mask[:, :, 32:] = False
    v = kiln.verify_drafts(t, [[1, 2], [3, 4]], temperature=0.9, seed=5, allowed_mask=mask,
                           logit_bias=[{5: 1.0}, None], history=[[1], [2, 3]],
                           repetition_penalty=1.3)
    emitted = v.tokens[v.tokens >= 0]
    assert (emitted < 32).all() and v.valid.tolist() == [1, 1]
    w = kiln.verify_drafts(t, [[1, 2], [3, 4]], temperature=0.9, seed=5,
                           allowed_mask=pack_words(mask.reshape(-1, V)).reshape(B, K + 1, -1),
                           logit_bias=[{5: 1.0}, None], history=[[1], [2, 3]],
                           repetition_penalty=1.3)
    assert same_bytes(v.tokens, w.tokens) and same_bytes(v.logprobs, w.logprobs)


def test_verify_errors():
    B, K, V = 2, 2, 16
    t = _targets_for(B, K, V, 85)
    with pytest.raises(kiln.KilnError, match=re.escape(
            "draft_ids[1] = 16 (request 0, position 1) is outside [0, 16)")):
        kiln.verify_drafts(t, [[0, 16], [0, 0]], seed=1)
    with pytest.raises(kiln.KilnError, match=r"num_drafts\[1\] = 3"):
        kiln.verify_drafts(t, np.zeros((B, K), np.int32), num_drafts=[0, 3], seed=1)
    with pytest.raises(ValueError, match=r"draft_ids has 3 columns, expected K = 2"):
        kiln.verify_drafts(t, np.zeros((B, 3), np.int32))
    with pytest.raises(ValueError, match=r"draft_ids\[0\]\[1\] = 4294967296 is outside"):
        kiln.verify_drafts(t, [[0, 2**32], [0, 0]])
    with pytest.raises(ValueError, match=r"num_drafts\[0\] = 4294967296 is outside"):
        kiln.verify_drafts(t, np.zeros((B, K), np.int32), num_drafts=[2**32, 0])
    with pytest.raises(ValueError, match=r"draft_probs has shape \(2, 2, 15\)"):
        kiln.verify_drafts(t, np.zeros((B, K), np.int32), draft_probs=np.zeros((2, 2, 15)))
    with pytest.raises(ValueError, match=r"target_logits must be \[B, K \+ 1, V\]"):
        kiln.verify_drafts(t[0], np.zeros((B, K), np.int32))
    q = np.zeros((B, K, V), np.float32)
    with pytest.raises(kiln.KilnError, match=re.escape(
            "draft_probs[request 0, position 0, token 0] = 0")):
        kiln.verify_drafts(t, np.zeros((B, K), np.int32), draft_probs=q, seed=1)


def test_chain_speculative_sampling_is_verify_drafts_on_log_probs():
    rng = np.random.default_rng(61)
    B, K, V = 6, 3, 40
    x = rng.normal(0, 2, (B, K + 1, V)).astype(np.float32)
    target = np.exp(x - x.max(axis=2, keepdims=True))
    target = (target / target.sum(axis=2, keepdims=True)).astype(np.float32)
    target[:, :, 7] = 0.0  # a token the target never emits
    q = rng.dirichlet(np.ones(V), (B, K)).astype(np.float32)
    drafts = rng.integers(0, V, (B, K)).astype(np.int32)
    drafts[:, 0] = 7
    for probs in (q, None):
        tok, acc, emitted = kiln.chain_speculative_sampling(probs, drafts, target, seed=5, offset=2)
        with np.errstate(divide="ignore"):
            ref = kiln.verify_drafts(np.log(target), drafts, draft_probs=probs, seed=5, offset=2)
        assert same_bytes(tok, ref.tokens) and same_bytes(acc, ref.num_accepted)
        assert same_bytes(emitted, ref.num_accepted)
        # draft 0 is token 7, which the target gives no mass: always rejected
        assert (acc == 0).all() and (tok[:, 0] != 7).all() and (tok[:, 1:] == -1).all()
