"""PyTorch tensors: on the CPU they go to the CPU backend and give the
NumPy path's bytes; on a GPU (skipped without one) they are sampled in place
on the tensor's device and the current stream, and give the CPU's bytes."""
import numpy as np
import pytest

import kiln
from conftest import EFFORT, requires_gpu, same_bytes, zipf_rows

torch = pytest.importorskip("torch")


def np_of(t):
    return t.detach().cpu().numpy()


def test_cpu_tensors_give_numpy_bytes_and_torch_tensors():
    x = zipf_rows(6, 800, 21)
    t = torch.from_numpy(x)
    a = kiln.sample(t, temperature=0.8, top_k=torch.tensor([0, 5, 50, 0, 5, 50]), top_p=0.9,
                    seed=torch.arange(6), offset=3, return_logprobs=True, return_probs=True)
    b = kiln.sample(x, temperature=0.8, top_k=np.array([0, 5, 50, 0, 5, 50]), top_p=0.9,
                    seed=np.arange(6, dtype=np.uint64), offset=3, return_logprobs=True,
                    return_probs=True)
    assert isinstance(a.tokens, torch.Tensor) and a.tokens.dtype == torch.int32
    for name in ("tokens", "logprobs", "probs", "kept_counts", "valid"):
        assert same_bytes(np_of(getattr(a, name)), getattr(b, name)), name


def test_cpu_bfloat16_and_views():
    x = torch.from_numpy(zipf_rows(4, 600, 22))
    bf = x.to(torch.bfloat16)
    a = kiln.sample(bf, top_p=0.7, seed=1, return_probs=True)
    b = kiln.sample(bf.float(), top_p=0.7, seed=1, return_probs=True)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.probs, b.probs)
    wide = torch.from_numpy(zipf_rows(4, 700, 23))
    a = kiln.sample(wide[:, :650], top_k=10, seed=2)
    b = kiln.sample(wide[:, :650].contiguous(), top_k=10, seed=2)
    assert torch.equal(a.tokens, b.tokens)


def test_flashinfer_shaped_call_on_cpu_tensors():
    t = torch.from_numpy(np.stack([EFFORT] * 3))
    tokens = kiln.top_k_top_p_sampling_from_logits(t, torch.tensor([1, 1, 1]), 0.5, seed=0)
    assert tokens.tolist() == [3, 3, 3]


# ------------------------------------------------------------------ GPU
@requires_gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_gpu_gives_the_cpu_bytes(dtype):
    B, V, n = 33, 32000, 3
    x = torch.from_numpy(zipf_rows(B, V, 30)).to(getattr(torch, dtype))
    hist = [list(range(r % 7)) for r in range(B)]
    kw = dict(temperature=torch.linspace(0, 1.5, B), top_k=torch.arange(B) * 10,
              top_p=0.9, min_p=0.01, repetition_penalty=1.2, presence_penalty=0.1,
              frequency_penalty=0.05, seed=torch.arange(B) * 1000003, offset=7,
              num_samples=n, history=hist, return_logprobs=True, return_raw_logprobs=True,
              return_probs=True)
    cpu = kiln.sample(x, **kw)
    gpu_kw = {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in kw.items()}
    gpu = kiln.sample(x.cuda(), **gpu_kw)
    assert gpu.tokens.is_cuda and gpu.tokens.device == x.cuda().device
    for name in ("tokens", "logprobs", "raw_logprobs", "probs", "kept_counts", "valid"):
        assert same_bytes(np_of(getattr(gpu, name)), np_of(getattr(cpu, name))), name


@requires_gpu
def test_gpu_runs_on_the_current_stream():
    x = torch.from_numpy(zipf_rows(64, 50000, 31)).cuda()
    want = kiln.top_k_top_p_sampling_from_logits(x.cpu(), 50, 0.9, seed=5)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        y = x * 1.0  # produced on the side stream; kiln must run after it there
        got = kiln.top_k_top_p_sampling_from_logits(y, 50, 0.9, seed=5)
    side.synchronize()
    assert torch.equal(got.cpu(), want)


@requires_gpu
def test_gpu_errors_and_device_params():
    x = torch.from_numpy(np.stack([EFFORT] * 4)).cuda()
    with pytest.raises(kiln.KilnError, match="top_p"):
        kiln.sample(x, top_p=1.5)
    # a bad per-row value in device memory is checked on the device: row invalid
    r = kiln.sample(x, top_p=torch.tensor([1.0, 1.5, 1.0, 1.0], device="cuda"), seed=0)
    assert r.valid.tolist() == [1, 0, 1, 1] and r.tokens[1].item() == -1


@requires_gpu
def test_gpu_cuda_graph_capture_and_replay():
    x = torch.from_numpy(zipf_rows(8, 4096, 32)).cuda()
    seeds = torch.arange(8, device="cuda")
    offset = torch.zeros(8, dtype=torch.int64, device="cuda")
    kiln.sample(x, top_p=0.9, seed=seeds, offset=offset)  # warm the cache (allocations)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = kiln.sample(x, top_p=0.9, seed=seeds, offset=offset).tokens
    for step in range(3):
        offset.fill_(step)
        g.replay()
        torch.cuda.synchronize()
        want = kiln.sample(x.cpu(), top_p=0.9, seed=torch.arange(8), offset=step).tokens
        assert torch.equal(out.cpu(), want)


# ------------------------------------ mask, bias, top-N, score, verify
def _extras_case(B, V, seed):
    x = torch.from_numpy(zipf_rows(B, V, seed))
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand((B, V), generator=g) < 0.7
    mask[:, 0] = True
    bias = [{1: 2.0, 7: -1.5}] + [None] * (B - 1)
    return x, mask, bias


def test_cpu_tensor_masks_give_numpy_bytes():
    x, mask, bias = _extras_case(4, 300, 40)
    kw = dict(logit_bias=bias, top_logprobs=5, return_entropy=True, dynatemp_range=0.2, seed=3,
              num_samples=2, return_probs=True)
    a = kiln.sample(x, allowed_mask=mask, **kw)
    b = kiln.sample(x.numpy(), allowed_mask=mask.numpy(), **kw)
    assert isinstance(a.raw_top_ids, torch.Tensor)
    for name in ("tokens", "probs", "raw_top_ids", "final_top_logprobs", "raw_ranks", "entropy",
                 "temperatures"):
        assert same_bytes(np_of(getattr(a, name)), getattr(b, name)), name
    s = kiln.score(x, a.tokens, allowed_mask=mask, logit_bias=bias)
    assert same_bytes(np_of(s.logprobs), kiln.score(x.numpy(), b.tokens, allowed_mask=mask.numpy(),
                                                     logit_bias=bias).logprobs)


@requires_gpu
def test_gpu_extras_give_the_cpu_bytes():
    B, V, K = 9, 32000, 3
    x, mask, bias = _extras_case(B, V, 41)
    kw = dict(logit_bias=bias, top_logprobs=8, return_entropy=True, dynatemp_range=0.3,
              temperature=0.8, top_p=0.9, seed=torch.arange(B), num_samples=2,
              return_logprobs=True)
    cpu = kiln.sample(x, allowed_mask=mask, **kw)
    gpu = kiln.sample(x.cuda(), allowed_mask=mask.cuda(), **{**kw, "seed": torch.arange(B).cuda()})
    for name in ("tokens", "logprobs", "raw_top_ids", "raw_top_logprobs", "final_top_ids",
                 "final_top_logprobs", "raw_ranks", "entropy", "raw_entropy", "temperatures"):
        assert same_bytes(np_of(getattr(gpu, name)), np_of(getattr(cpu, name))), name
    sc = kiln.score(x, cpu.tokens, top_logprobs=4, allowed_mask=mask, logit_bias=bias)
    sg = kiln.score(x.cuda(), gpu.tokens, top_logprobs=4, allowed_mask=mask.cuda(),
                    logit_bias=bias)
    for name in kiln.ScoreResult._fields:
        assert same_bytes(np_of(getattr(sg, name)), np_of(getattr(sc, name))), name
    t = torch.from_numpy(zipf_rows(B * (K + 1), V, 42)).reshape(B, K + 1, V)
    drafts = t.argmax(-1)[:, :K].to(torch.int32)
    vc = kiln.verify_drafts(t, drafts, temperature=0.7, seed=torch.arange(B), offset=2)
    vg = kiln.verify_drafts(t.cuda(), drafts.cuda(), temperature=0.7,
                            seed=torch.arange(B).cuda(), offset=2)
    for name in ("tokens", "num_accepted", "logprobs", "valid"):
        assert same_bytes(np_of(getattr(vg, name)), np_of(getattr(vc, name))), name

