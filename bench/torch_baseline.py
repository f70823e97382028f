#!/usr/bin/env python3
"""The kiln-bench sweep through PyTorch's own ops, for a side-by-side table.

Same methods and semantics as kiln-bench (HF warper order: temperature, top-k,
top-p, min-p; penalties as vLLM applies them), same row shapes (the Zipf-like
textbook row, a Zipf law, peaked and flat rows, regenerated here with the
same splitmix64 generator), several input sets rotated. Backends:

  torch-cpu-1t / torch-cpu-all  softmax + sort/topk + cumsum mask + multinomial
  torch-cuda                    the same on the GPU (CUDA events, median)
  torch-cuda-exp                the exponential-race draw vLLM falls back to
  flashinfer                    top_k_top_p_sampling_from_logits, top_p_/min_p_
                                sampling_from_probs, when flashinfer imports

Writes the same CSV columns as kiln-bench. Timings: CPU median of >= 5 calls
(time.perf_counter); GPU median of >= 20 after warm-up, with CUDA events
around CUDA-graph replays where capture works, else eager calls.
"""
import argparse
import math
import statistics
import sys
import time

import numpy as np

try:
    import torch
except ImportError:  # the report says the torch columns are missing
    print("torch_baseline: torch is not installed", file=sys.stderr)
    sys.exit(3)

METHODS = {
    "greedy": dict(t=0.0, k=0, p=1.0, min_p=0.0, pen=False),
    "temperature": dict(t=0.7, k=0, p=1.0, min_p=0.0, pen=False),
    "top_k50": dict(t=1.0, k=50, p=1.0, min_p=0.0, pen=False),
    "top_p0.9": dict(t=1.0, k=0, p=0.9, min_p=0.0, pen=False),
    "t0.7_k50_p0.9": dict(t=0.7, k=50, p=0.9, min_p=0.0, pen=False),
    "min_p0.05": dict(t=1.0, k=0, p=1.0, min_p=0.05, pen=False),
    "t0.7_k50_p0.9_pen512": dict(t=0.7, k=50, p=0.9, min_p=0.0, pen=True),
}
HISTORY = 512
MASK64 = (1 << 64) - 1


# ------------------------------------------------------------ row shapes
def splitmix(seed, count):
    """The first `count` outputs of kiln's ks_rng (splitmix64) from `seed`."""
    with np.errstate(over="ignore"):
        i = np.arange(1, count + 1, dtype=np.uint64)
        z = np.uint64(seed & MASK64) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def unit(u):
    return (u >> np.uint64(11)).astype(np.float64) * 2.0**-53


def normals(seed, count):
    u = unit(splitmix(seed, 2 * count))
    return np.sqrt(-2.0 * np.log(1.0 - u[0::2])) * np.cos(2 * math.pi * u[1::2])


def zipf_like(V, seed):
    x = 2.0 * normals(seed, V)
    x[:5] = [8.0, 5.0, 4.5, 4.0, 3.5][: min(5, V)]
    tail = unit(splitmix(seed, 2 * V + 15))[2 * V:]
    x[5:20] = 1.0 + 2.0 * tail[: max(0, min(V, 20) - 5)]
    return x


def zipf(V, seed):
    rng = np.random.default_rng(seed)
    x = -1.1 * np.log(np.arange(1, V + 1)) + 0.05 * normals(seed, V)
    return rng.permutation(x)


def peaked(V, seed):
    x = normals(seed, V)
    x[seed % V] = math.log(9.0 * V * 1.6487) + 1.0
    return x


def flat(V, seed):
    return 0.1 * normals(seed, V)


def make_logits(rows, V, seed):
    shapes = [zipf_like, zipf, peaked, flat]
    return np.stack([shapes[b % 4](V, seed + b) for b in range(rows)]).astype(np.float32)


# --------------------------------------------------------- the pipeline
def penalise(logits, history, prompt_len, rep=1.1, pres=0.5, freq=0.3):
    """vLLM's penalties: repetition over prompt + output, then frequency and
    presence over output tokens."""
    B, V = logits.shape
    seen = torch.zeros((B, V), dtype=torch.bool, device=logits.device)
    seen.scatter_(1, history, True)
    counts = torch.zeros((B, V), dtype=logits.dtype, device=logits.device)
    gen = history[:, prompt_len:]
    counts.scatter_add_(1, gen, torch.ones_like(gen, dtype=logits.dtype))
    logits = torch.where(seen, torch.where(logits > 0, logits / rep, logits * rep), logits)
    return logits - freq * counts - pres * (counts > 0).to(logits.dtype)


def filtered_probs(logits, m):
    """Final distribution in HF warper order: temperature, top-k, top-p, min-p."""
    x = logits.float() / m["t"]
    if m["k"] > 0:
        kth = torch.topk(x, m["k"], dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, -math.inf)
    if m["p"] < 1.0:
        sorted_x, idx = torch.sort(x, dim=-1, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        drop = (cum - probs) >= m["p"]  # keep the token that crosses p
        sorted_x = sorted_x.masked_fill(drop, -math.inf)
        x = torch.empty_like(x).scatter_(1, idx, sorted_x)
    probs = torch.softmax(x, dim=-1)
    if m["min_p"] > 0.0:
        top = probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < m["min_p"] * top, 0.0)
    return probs


def sample(logits, m, history, prompt_len, race=False):
    if m["pen"]:
        logits = penalise(logits.float(), history, prompt_len)
    if m["t"] == 0.0:
        return torch.argmax(logits, dim=-1)
    probs = filtered_probs(logits, m)
    if race:
        q = torch.empty_like(probs).exponential_()
        return torch.argmax(probs / q, dim=-1)
    return torch.multinomial(probs, 1).squeeze(1)


# ------------------------------------------------------------- timing
def time_cpu(fn, sets, min_ms):
    fn(sets[0])
    times, spent, i = [], 0.0, 0
    while len(times) < 5 or spent < min_ms / 1e3:
        t0 = time.perf_counter()
        fn(sets[i % len(sets)])
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
        i += 1
        if len(times) >= 256:
            break
    return statistics.median(times) * 1e6, len(times)


def time_cuda(fn, sets):
    stream = torch.cuda.Stream()
    graphs = []
    try:  # graph replays, like kiln-bench; multinomial may refuse capture
        with torch.cuda.stream(stream):
            for s in sets:
                fn(s)
            torch.cuda.synchronize()
            for s in sets:
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g, stream=stream):
                    fn(s)
                graphs.append(g)
        run = [g.replay for g in graphs]
        how = "graph"
    except Exception:
        torch.cuda.synchronize()
        run = [lambda s=s: fn(s) for s in sets]
        how = "eager"
    for r in run * 3:
        r()
    torch.cuda.synchronize()
    times = []
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for i in range(max(20, 2 * len(run))):
        e0.record()
        run[i % len(run)]()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) * 1e3)
    return statistics.median(times), len(times), how


def copy_gbps(device):
    n = 1 << 28 if device == "cuda" else 1 << 27
    a = torch.ones(n, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    best = 0.0
    for _ in range(5):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        b.copy_(a)
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * 4 * n / ((time.perf_counter() - t0) * 1e9))
    return best


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv")
    ap.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    ap.add_argument("--threads", default="1,all", help="CPU thread counts: 1, all, or both")
    ap.add_argument("--rows", default="1,8,64,256,1024")
    ap.add_argument("--vocab", default="32000,128256,151936,262144")
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--min-ms", type=float, default=300.0)
    ap.add_argument("--max-call-ms", type=float, default=2000.0)
    ap.add_argument("--quick", action="store_true")
    a, _ = ap.parse_known_args()  # kiln-bench's own options (--backends, ...) pass through
    if a.quick:
        a.rows, a.vocab, a.dtypes, a.device, a.min_ms = "1,8", "32000", "f32", "cpu", 20.0
    rows = [int(v) for v in a.rows.split(",")]
    vocab = [int(v) for v in a.vocab.split(",")]
    dtypes = a.dtypes.split(",")
    methods = a.methods.split(",")
    devices = ["cpu", "cuda"] if a.device == "all" else [a.device]
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
    try:
        import flashinfer  # noqa: F401
        have_fi = "cuda" in devices
    except Exception:
        have_fi = False
    all_threads = torch.get_num_threads()
    gbps = {d: copy_gbps(d) for d in devices}
    out = open(a.csv, "w") if a.csv else None
    if out:
        out.write("backend,rows,vocab,dtype,method,us_per_call,reps,tokens_per_s,gbps,floor_us,pct_of_floor,note\n")
    print(f"torch {torch.__version__}; CPU threads {all_threads}; copy GB/s {gbps}; flashinfer {have_fi}")
    slow = {}

    def emit(backend, B, V, dt, m, us, reps, floor_bw, note=""):
        nbytes = B * V * (4 if dt == "f32" else 2)
        floor_us = nbytes / (floor_bw * 1e3) if floor_bw else 0.0
        tps = B / (us * 1e-6) if us else 0.0
        gb = nbytes / (us * 1e3) if us else 0.0
        pct = 100.0 * floor_us / us if us else 0.0
        line = f"{backend},{B},{V},{dt},{m},{us:.3f},{reps},{tps:.0f},{gb:.4f},{floor_us:.3f},{pct:.2f},{note}"
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    for dt in dtypes:
        tdt = torch.float32 if dt == "f32" else torch.bfloat16
        for V in vocab:
            for B in rows:
                nbytes = B * V * (4 if dt == "f32" else 2)
                n_sets = max(2, min(8, (256 << 20) // max(1, nbytes) + 1))
                host = [torch.from_numpy(make_logits(B, V, 1000 * s + 17)).to(tdt) for s in range(n_sets)]
                hist = [torch.from_numpy((splitmix(s, B * HISTORY) % np.uint64(V)).astype(np.int64).reshape(B, HISTORY)) for s in range(n_sets)]
                for mname in methods:
                    m = METHODS[mname]
                    for dev in devices:
                        sets = [(h.to(dev), hi.to(dev)) for h, hi in zip(host, hist)]
                        if dev == "cpu":
                            for th in a.threads.split(","):
                                n = 1 if th == "1" else all_threads
                                name = f"torch-cpu-{'1t' if n == 1 else 'all'}"
                                if slow.get((name, mname), 0.0) > a.max_call_ms:
                                    emit(name, B, V, dt, mname, 0.0, 0, gbps[dev], "skipped: slower than --max-call-ms on a smaller shape")
                                    continue
                                torch.set_num_threads(n)
                                us, reps = time_cpu(lambda s: sample(s[0], m, s[1], HISTORY // 2), sets, a.min_ms)
                                slow[(name, mname)] = max(slow.get((name, mname), 0.0), us / 1e3)
                                emit(name, B, V, dt, mname, us, reps, gbps[dev])
                            torch.set_num_threads(all_threads)
                        else:
                            for race in (False, True):
                                name = "torch-cuda-exp" if race else "torch-cuda"
                                us, reps, how = time_cuda(lambda s: sample(s[0], m, s[1], HISTORY // 2, race), sets)
                                emit(name, B, V, dt, mname, us, reps, gbps[dev], how)
                            if have_fi and not m["pen"] and m["t"] > 0:
                                us, reps, how = time_cuda(lambda s: flashinfer_sample(s[0], m), sets)
                                emit("flashinfer", B, V, dt, mname, us, reps, gbps[dev], how)
    if out:
        out.close()


def flashinfer_sample(logits, m):
    import flashinfer

    x = logits.float() / m["t"]
    if m["k"] > 0 or m["p"] < 1.0:
        k = m["k"] if m["k"] > 0 else x.shape[1]
        return flashinfer.sampling.top_k_top_p_sampling_from_logits(x, k, m["p"])
    probs = torch.softmax(x, dim=-1)
    if m["min_p"] > 0.0:
        return flashinfer.sampling.min_p_sampling_from_probs(probs, m["min_p"])
    return flashinfer.sampling.top_p_sampling_from_probs(probs, 1.0)


if __name__ == "__main__":
    main()
