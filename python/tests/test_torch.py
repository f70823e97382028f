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
