"""kiln as PyTorch operators (kiln.torch_ops): the same bytes as the direct
C call, torch.library.opcheck, torch.compile(fullgraph=True) with no graph
break and the eager bytes, and (on a GPU, skipped without one) CUDA-graph
capture and replay with new seeds."""
import numpy as np
import pytest

import kiln
from conftest import c_sample, requires_gpu, same_bytes, zipf_rows

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed: the torch.library operator tests cannot run")
ops = pytest.importorskip("kiln.torch_ops")

B, V = 5, 700


def per_row(rows=B):
    return dict(temperature=torch.tensor([0.0, 0.7, 1.0, 1.3, 0.9][:rows]),
                top_k=torch.tensor([0, 50, 0, 5, 20][:rows], dtype=torch.int32),
                top_p=torch.tensor([1.0, 0.9, 0.8, 1.0, 0.95][:rows]),
                min_p=torch.tensor([0.0, 0.0, 0.05, 0.0, 0.01][:rows]),
                seed=torch.arange(rows, dtype=torch.int64) * 1000003 + 7,
                offset=torch.full((rows,), 3, dtype=torch.int64))


def op_args(x, kw, n=2, history=None, prompt=None, probs=True):
    f = torch.float32
    rows = x.shape[0]
    offs = ids = pl = None
    if history is not None:
        offs = torch.tensor(np.concatenate([[0], np.cumsum([len(h) for h in history])]),
                            dtype=torch.int64)
        ids = torch.tensor([t for h in history for t in h] or [0], dtype=torch.int32)
        if prompt is not None:
            pl = torch.tensor(prompt, dtype=torch.int32)
    return (x, kw["temperature"], kw["top_k"], kw["top_p"], kw["min_p"],
            torch.full((rows,), 1.2, dtype=f), torch.full((rows,), 0.1, dtype=f),
            torch.full((rows,), 0.05, dtype=f), kw["seed"], kw["offset"], n, offs, ids, pl, probs)


def test_op_gives_the_c_call_bytes():
    x = zipf_rows(B, V, 41)
    kw = per_row()
    hist = [[1, 2, 3], [], [5, 5, 9, 600], [7], [0, 699]]
    out = torch.ops.kiln.sample(*op_args(torch.from_numpy(x), kw, n=3, history=hist,
                                         prompt=[1, 0, 2, 0, 1]))
    ref = c_sample(x, temperature=kw["temperature"].numpy(), top_k=kw["top_k"].numpy(),
                   top_p=kw["top_p"].numpy(), min_p=kw["min_p"].numpy(), repetition=1.2,
                   presence=0.1, frequency=0.05, seed=kw["seed"].numpy().astype(np.uint64),
                   offset=3, n=3, history=hist, prompt_lengths=[1, 0, 2, 0, 1])
    names = ("tokens", "logprobs", "raw_logprobs", "probs", "kept_counts", "valid")
    for name, got in zip(names, out):
        assert same_bytes(got.numpy(), ref[name]), name


def test_wrappers_broadcast_scalars_and_match_kiln_sample():
    x = torch.from_numpy(zipf_rows(B, V, 42))
    r = ops.sample(x, temperature=0.8, top_k=40, top_p=0.9, seed=2**64 - 1, offset=5,
                   num_samples=2, return_probs=True)
    e = kiln.sample(x, temperature=0.8, top_k=40, top_p=0.9, seed=2**64 - 1, offset=5,
                    num_samples=2, return_logprobs=True, return_raw_logprobs=True,
                    return_probs=True)
    for name in ("tokens", "logprobs", "raw_logprobs", "probs", "kept_counts", "valid"):
        assert torch.equal(getattr(r, name), getattr(e, name)), name
    t = ops.top_k_top_p_sampling_from_logits(x, 40, 0.9, temperature=0.8, seed=9, offset=1)
    f = kiln.top_k_top_p_sampling_from_logits(x, 40, 0.9, temperature=0.8, seed=9, offset=1)
    assert t.dtype == torch.int32 and t.shape == (B,) and torch.equal(t, f)
    with pytest.raises(ValueError, match="seed = 18446744073709551616"):
        ops.sample(x, seed=2**64)


def test_bad_input_raises_kilns_message_through_the_op():
    x = torch.from_numpy(zipf_rows(B, V, 43))
    with pytest.raises(kiln.KilnError, match=r"top_p\[2\] = 1.5"):
        ops.sample(x, top_p=torch.tensor([0.9, 0.9, 1.5, 0.9, 0.9]))
    with pytest.raises(ValueError, match="logits"):
        ops.sample(x[0])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("history", [False, True])
def test_opcheck_sample(dtype, history):
    x = torch.from_numpy(zipf_rows(B, V, 44)).to(getattr(torch, dtype))
    hist = [[1, 2], [3], [], [4, 4, 4], [699]] if history else None
    args = op_args(x, per_row(), n=2, history=hist, prompt=[1, 0, 0, 2, 0] if history else None,
                   probs=not history)
    torch.library.opcheck(torch.ops.kiln.sample.default, args)


def test_opcheck_top_k_top_p():
    x = torch.from_numpy(zipf_rows(B, V, 45))
    kw = per_row()
    torch.library.opcheck(torch.ops.kiln.top_k_top_p_sampling_from_logits.default,
                          (x, kw["top_k"], kw["top_p"], kw["temperature"], kw["seed"],
                           kw["offset"]))


def decode_step(logits, seed, offset):
    """A serving-loop step: scale, sample two draws per row, and keep the
    best draw of each row by its log-probability."""
    r = ops.sample(logits * 1.0, temperature=0.7, top_k=50, top_p=0.9, seed=seed, offset=offset,
                   num_samples=2)
    best = r.logprobs.argmax(dim=1, keepdim=True)
    return r.tokens.gather(1, best).squeeze(1), r.logprobs, r.valid


def test_torch_compile_fullgraph_no_breaks_same_bytes():
    import torch._dynamo
    x = torch.from_numpy(zipf_rows(B, V, 46))
    seed = torch.arange(B, dtype=torch.int64) + 11
    offset = torch.full((B,), 4, dtype=torch.int64)
    torch._dynamo.reset()
    explained = torch._dynamo.explain(decode_step)(x, seed, offset)
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1
    compiled = torch.compile(decode_step, fullgraph=True)
    for step in range(3):
        got = compiled(x, seed, offset + step)
        want = decode_step(x, seed, offset + step)
        for g, w in zip(got, want):
            assert same_bytes(g.numpy(), w.numpy())


# ------------------------------------------------------------------ GPU
@requires_gpu
def test_opcheck_on_the_gpu():
    x = torch.from_numpy(zipf_rows(B, V, 47)).cuda()
    kw = {k: v.cuda() for k, v in per_row().items()}
    args = op_args(x, kw, n=2)
    args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args)
    torch.library.opcheck(torch.ops.kiln.sample.default, args)


@requires_gpu
def test_cuda_graph_capture_and_replay_with_new_seeds():
    x = torch.from_numpy(zipf_rows(B, 32000, 48)).cuda()
    seed = torch.arange(B, dtype=torch.int64, device="cuda") + 100
    offset = torch.zeros(B, dtype=torch.int64, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        ops.warm_up(x, num_samples=2)
        decode_step(x, seed, offset)
    s.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=s):
        captured = decode_step(x, seed, offset)
    for step in range(4):
        seed.copy_(torch.arange(B, device="cuda") * 7 + step)
        offset.fill_(step)
        g.replay()
        torch.cuda.synchronize()
        want = decode_step(x, seed, offset)
        torch.cuda.synchronize()
        for c, w in zip(captured, want):
            assert torch.equal(c, w)
        cpu = decode_step(x.cpu(), seed.cpu(), offset.cpu())
        assert torch.equal(captured[0].cpu(), cpu[0])


# ------------------------------------------- the extras, score, verify
def mask_words(allowed):
    """bool [B, V] -> int32 words [B, ceil(V / 32)], bit j % 32 of word j / 32."""
    B, Vv = allowed.shape
    W = (Vv + 31) // 32
    bits = np.zeros((B, W * 32), np.uint64)
    bits[:, :Vv] = allowed
    words = (bits.reshape(B, W, 32) << np.arange(32, dtype=np.uint64)).sum(axis=2)
    return torch.from_numpy(words.astype(np.uint32).view(np.int32))


def test_sample_extras_match_kiln_sample():
    x = torch.from_numpy(zipf_rows(B, V, 50))
    rng = np.random.default_rng(3)
    allowed = rng.random((B, V)) < 0.7
    words = mask_words(allowed)
    kw = dict(temperature=0.9, top_p=0.9, seed=5, offset=2, num_samples=3)
    r = ops.sample(x, allowed_mask=words, dynatemp_range=0.4, dynatemp_exponent=1.5,
                   top_logprobs=6, return_entropy=True, **kw)
    e = kiln.sample(x, allowed_mask=words, dynatemp_range=0.4, dynatemp_exponent=1.5,
                    top_logprobs=6, return_entropy=True, return_logprobs=True,
                    return_raw_logprobs=True, **kw)
    for name in ("tokens", "logprobs", "raw_logprobs", "kept_counts", "valid", "raw_top_ids",
                 "raw_top_logprobs", "final_top_ids", "final_top_logprobs", "raw_ranks",
                 "entropy", "raw_entropy", "temperatures"):
        assert torch.equal(getattr(r, name), getattr(e, name)), name
    assert not allowed[np.arange(B)[:, None], r.tokens.numpy()].any() == False  # noqa: E712
    assert allowed[np.arange(B)[:, None], r.tokens.numpy()].all()
    plain = ops.sample(x, **kw)
    assert plain.raw_top_ids is None and plain.entropy is None
    assert torch.equal(plain.temperatures, torch.full((B,), 0.9))


def test_opcheck_sample_extras():
    x = torch.from_numpy(zipf_rows(B, V, 51))
    words = mask_words(np.random.default_rng(4).random((B, V)) < 0.8)
    args = list(op_args(x, per_row(), n=2))
    args += [words, torch.full((B,), 0.3), torch.full((B,), 1.0), 4, True]
    torch.library.opcheck(torch.ops.kiln.sample.default, tuple(args))


def test_score_op_matches_kiln_score_and_opcheck():
    x = torch.from_numpy(zipf_rows(B, V, 52))
    targets = torch.tensor([[1, 2, -1], [0, 699, 5], [3, 3, 3], [-1, -1, -1], [10, 20, 30]],
                           dtype=torch.int32)
    r = ops.score(x, targets, repetition_penalty=1.1, top_logprobs=4)
    e = kiln.score(x, targets, repetition_penalty=1.1, top_logprobs=4)
    for name in ("logprobs", "ranks", "top_ids", "top_logprobs", "entropy", "valid"):
        assert same_bytes(getattr(r, name).numpy(), np.asarray(getattr(e, name))), name
    # opcheck compares outputs without equal_nan, so no padding (NaN) here
    f = torch.full((B,), 1.0)
    z = torch.zeros(B)
    torch.library.opcheck(torch.ops.kiln.score.default,
                          (x, targets.clamp(min=0), f, z, z, None, None, None, None, 4))


def test_verify_drafts_op_matches_kiln_and_opcheck():
    K = 3
    x = torch.from_numpy(zipf_rows(B * (K + 1), V, 53).reshape(B, K + 1, V))
    drafts = torch.from_numpy(np.random.default_rng(5).integers(0, V, (B, K)).astype(np.int32))
    drafts[:, 0] = x[:, 0].argmax(dim=1).to(torch.int32)
    nd = torch.tensor([3, 0, 1, 2, 3], dtype=torch.int32)
    r = ops.verify_drafts(x, drafts, nd, temperature=0.8, top_k=50, seed=9, offset=1)
    e = kiln.verify_drafts(x, drafts, nd, temperature=0.8, top_k=50, seed=9, offset=1)
    for name in ("tokens", "num_accepted", "logprobs", "valid"):
        assert same_bytes(getattr(r, name).numpy(), np.asarray(getattr(e, name))), name
    # opcheck compares without equal_nan and logprobs are NaN past the
    # emitted tokens: greedy rows whose drafts are the argmax accept all K
    # and emit K + 1 tokens, so nothing is NaN there
    greedy = x.argmax(dim=2).to(torch.int32)[:, :K].contiguous()
    zeros, ones = torch.zeros(B), torch.ones(B)
    kw = per_row()
    q = torch.softmax(torch.from_numpy(zipf_rows(B * K, V, 54)).reshape(B, K, V), dim=-1)
    for probs in (None, q):
        torch.library.opcheck(torch.ops.kiln.verify_drafts.default,
                              (x, greedy, None, probs, zeros, kw["top_k"], kw["top_p"],
                               kw["min_p"], ones, zeros, zeros, kw["seed"], kw["offset"], None,
                               None, None))
    # and under torch.compile, with rejections (NaN included), the same bytes
    def step(t, d, n):
        return ops.verify_drafts(t, d, n, temperature=0.8, top_k=50, seed=9, offset=1)
    compiled = torch.compile(step, fullgraph=True)
    for c, e in zip(compiled(x, drafts, nd), step(x, drafts, nd)):
        assert same_bytes(c.numpy(), e.numpy())
