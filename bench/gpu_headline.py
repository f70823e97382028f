#!/usr/bin/env python3
"""The peers of the GPU headline (bench/gpu-headline), on the same GPU in the same run.

  gpu_headline.py peers --csv FILE [--rows 1,64,256] [--vocab 32000,128256,151936]
                  [--dtypes f32,bf16] [--methods LIST] [--budget-s S] [--fi-jit-s S]
  gpu_headline.py report KILN_CSV [PEERS_CSV ...]   (a markdown table on stdout)

peers times, per shape and method:
  torch-cuda   PyTorch's sort pipeline in Hugging Face's warper order (temperature,
               top-k via topk, top-p via sort + softmax + cumsum, min-p on the
               probabilities, torch.multinomial), as in bench/torch_baseline.py
  flashinfer   top_k_top_p_sampling_from_logits, top_p_sampling_from_probs,
               min_p_sampling_from_probs, sampling_from_logits, when flashinfer
               imports and its first call (a JIT compile when no prebuilt module is
               there) finishes within --fi-jit-s in a child process; otherwise every
               flashinfer row says why it is missing
and the device-to-device copy bandwidth (the floor), each call a CUDA-graph replay
timed with CUDA events (eager calls where capture fails; the note says which).
Logits: the same four row shapes as kiln-gpu-bench (Zipf-like, Zipf, peaked, flat),
generated on the GPU with a fixed seed. CSV columns are kiln-bench's.

report joins the CSVs: per dtype and method, a row per (V, B) with kiln cuda-auto
(the cluster path for these plain calls), cuda-rows (the same call through the
per-row kernels) and cuda-sort, PyTorch, FlashInfer and the floor in microseconds per call, and the
time ratios kiln/torch, kiln/FlashInfer and kiln/floor (kiln = cuda-auto; below 1
means kiln takes less time; kiln/floor is how many times the floor kiln takes).
Exit status of peers: 0, 1 on error, 77 when torch or its GPU is missing.
"""
import argparse
import csv
import math
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict

METHODS = {  # t, top_k, top_p, min_p: the names kiln-gpu-bench uses
    "t0.7_k50_p0.9": (0.7, 50, 0.9, 0.0),
    "top_p0.9": (1.0, 0, 0.9, 0.0),
    "min_p0.05": (1.0, 0, 1.0, 0.05),
    "plain": (1.0, 0, 1.0, 0.0),
    "top_k50": (1.0, 50, 1.0, 0.0),
}
COLUMNS = "backend,rows,vocab,dtype,method,us_per_call,reps,tokens_per_s,gbps,floor_us,pct_of_floor,note"


# ---------------------------------------------------------------- peers
def make_logits(torch, B, V, seed, device):
    """kiln-gpu-bench's four row shapes, in turn, drawn on the device."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    x = torch.empty((B, V), dtype=torch.float32, device=device)
    ranks = torch.arange(1, V + 1, device=device, dtype=torch.float32)
    for b in range(B):
        kind = b % 4
        n = torch.randn(V, generator=g, device=device)
        if kind == 0:  # Zipf-like with a few strong candidates
            r = 2.0 * n
            top = torch.tensor([8.0, 5.0, 4.5, 4.0, 3.5], device=device)[: min(5, V)]
            r[: top.numel()] = top
            r[5:20] = 1.0 + 2.0 * torch.rand(max(0, min(V, 20) - 5), generator=g, device=device)
        elif kind == 1:  # a Zipf law, shuffled
            r = (-1.1 * torch.log(ranks) + 0.05 * n)[torch.randperm(V, generator=g, device=device)]
        elif kind == 2:  # one dominant token
            r = n.clone()
            r[(seed + b) % V] = math.log(9.0 * V * 1.6487) + 1.0
        else:  # flat
            r = 0.1 * n
        x[b] = r
    return x


def torch_pipeline(torch, logits, t, k, p, min_p):
    x = logits.float() / t
    if k > 0:
        kth = torch.topk(x, k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, -math.inf)
    if p < 1.0:
        sorted_x, idx = torch.sort(x, dim=-1, descending=True)
        probs = torch.softmax(sorted_x, dim=-1)
        cum = torch.cumsum(probs, dim=-1)
        sorted_x = sorted_x.masked_fill((cum - probs) >= p, -math.inf)  # keep the crossing token
        x = torch.empty_like(x).scatter_(1, idx, sorted_x)
    probs = torch.softmax(x, dim=-1)
    if min_p > 0.0:
        top = probs.max(dim=-1, keepdim=True).values
        probs = probs.masked_fill(probs < min_p * top, 0.0)
    return torch.multinomial(probs, 1).squeeze(1)


def flashinfer_pipeline(torch, fi, logits, t, k, p, min_p):
    x = logits.float() / t
    if k > 0 or p < 1.0:
        return fi.sampling.top_k_top_p_sampling_from_logits(x, k if k > 0 else x.shape[1], p)
    if min_p > 0.0:
        return fi.sampling.min_p_sampling_from_probs(torch.softmax(x, dim=-1), min_p)
    if hasattr(fi.sampling, "sampling_from_logits"):
        return fi.sampling.sampling_from_logits(x)
    return fi.sampling.sampling_from_probs(torch.softmax(x, dim=-1))


def time_cuda(torch, fn, sets, reps=20):
    """Median microseconds of one call: CUDA-graph replays where capture works."""
    stream = torch.cuda.Stream()
    how = "graph"
    try:
        graphs = []
        with torch.cuda.stream(stream):
            for s in sets:  # warm-up outside capture (lazy init, JIT)
                fn(s)
        torch.cuda.synchronize()
        for s in sets:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=stream):
                out = fn(s)
            graphs.append((g, out))
        run = [g.replay for g, _ in graphs]
        outs = [o for _, o in graphs]
    except Exception as e:  # noqa: BLE001 - fall back to eager calls, and say so
        torch.cuda.synchronize()
        how = f"eager ({type(e).__name__})"
        run = [lambda s=s: fn(s) for s in sets]
        outs = None
    for r in run * 3:
        r()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(max(reps, 2 * len(run))):
        e0.record()
        r = run[i % len(run)]()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1) * 1e3)
    last = outs[-1] if outs else r
    return statistics.median(times), len(times), how, last


def copy_gbps(torch):
    n = 1 << 28  # 1 GiB of f32
    a = torch.ones(n, dtype=torch.float32, device="cuda")
    b = torch.empty_like(a)
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    ts = []
    for i in range(12):
        e0.record()
        b.copy_(a)
        e1.record()
        e1.synchronize()
        if i >= 2:
            ts.append(e0.elapsed_time(e1))
    ms = statistics.median(ts)
    del a, b
    return 2 * 4 * n / (ms * 1e6)


FI_PROBE = r"""
import sys, time, torch
t0 = time.time()
import flashinfer
x = torch.randn(4, 1000, device="cuda")
flashinfer.sampling.top_k_top_p_sampling_from_logits(x, 50, 0.9)
p = torch.softmax(x, -1)
flashinfer.sampling.top_p_sampling_from_probs(p, 0.9)
flashinfer.sampling.min_p_sampling_from_probs(p, 0.05)
(flashinfer.sampling.sampling_from_logits(x) if hasattr(flashinfer.sampling, "sampling_from_logits")
 else flashinfer.sampling.sampling_from_probs(p))
torch.cuda.synchronize()
print("flashinfer", flashinfer.__version__, "first calls in %.1f s" % (time.time() - t0))
"""


def flashinfer_status(jit_s):
    """(module or None, reason). Import and first calls in a child process under a
    time limit, so a JIT compile that does not fit the budget cannot eat it."""
    try:
        import importlib.util
        if importlib.util.find_spec("flashinfer") is None:
            return None, "flashinfer is not installed on this machine (and was not carried)"
    except Exception as e:  # noqa: BLE001
        return None, f"flashinfer lookup failed: {e}"
    try:
        r = subprocess.run([sys.executable, "-c", FI_PROBE], capture_output=True, text=True,
                           timeout=jit_s)
    except subprocess.TimeoutExpired:
        return None, f"flashinfer's first calls (JIT compile) did not finish in {jit_s:.0f} s"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["?"]
        return None, f"flashinfer failed: {tail[0][:150]}"
    print(r.stdout.strip(), flush=True)
    import flashinfer
    return flashinfer, ""


def peers(a):
    try:
        import torch
    except ImportError:
        print("gpu_headline: torch is not installed: skipped")
        return 77
    if not torch.cuda.is_available():
        print("gpu_headline: torch sees no CUDA device: skipped")
        return 77
    t_start = time.time()
    rows = [int(v) for v in a.rows.split(",")]
    vocab = [int(v) for v in a.vocab.split(",")]
    dtypes = a.dtypes.split(",")
    methods = a.methods.split(",")
    gbps = copy_gbps(torch)
    fi, fi_why = flashinfer_status(a.fi_jit_s)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}; device copy {gbps:.0f} GB/s; "
          f"flashinfer: {'yes' if fi else fi_why}", flush=True)
    out = open(a.csv, "w") if a.csv else None

    def emit(backend, B, V, dt, m, us, reps, note=""):
        nbytes = B * V * (4 if dt == "f32" else 2)
        floor_us = nbytes / (gbps * 1e3)
        tps = B / (us * 1e-6) if us else 0.0
        gb = nbytes / (us * 1e3) if us else 0.0
        pct = 100.0 * floor_us / us if us else 0.0
        line = (f"{backend},{B},{V},{dt},{m},{us:.3f},{reps},{tps:.0f},{gb:.4f},{floor_us:.3f},"
                f"{pct:.2f},{note.replace(',', ';')}")
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    if out:
        out.write(COLUMNS + "\n")
        out.write(f"copy-floor-torch,0,0,-,-,0,10,0,{gbps:.1f},0,0,torch copy_ of 1 GiB (read + write bytes / time)\n")
    for dt in dtypes:
        tdt = torch.float32 if dt == "f32" else torch.bfloat16
        for V in vocab:
            for B in rows:
                over = time.time() - t_start > a.budget_s
                if not over:
                    nbytes = B * V * (4 if dt == "f32" else 2)
                    n_sets = max(2, min(8, (128 << 20) // max(1, nbytes) + 1))
                    sets = [make_logits(torch, B, V, 1000 * s + 17, "cuda").to(tdt) for s in range(n_sets)]
                for mname in methods:
                    t, k, p, min_p = METHODS[mname]
                    if over:
                        emit("torch-cuda", B, V, dt, mname, 0.0, 0, "skipped: over --budget-s")
                        emit("flashinfer", B, V, dt, mname, 0.0, 0, "skipped: over --budget-s")
                        continue
                    try:
                        us, reps, how, tok = time_cuda(torch, lambda s: torch_pipeline(torch, s, t, k, p, min_p), sets)
                        bad = int(((tok < 0) | (tok >= V)).sum())
                        emit("torch-cuda", B, V, dt, mname, us, reps, how + (f"; {bad} tokens out of range" if bad else ""))
                    except Exception as e:  # noqa: BLE001
                        emit("torch-cuda", B, V, dt, mname, 0.0, 0, f"failed: {type(e).__name__}: {str(e)[:80]}")
                    if not fi:
                        emit("flashinfer", B, V, dt, mname, 0.0, 0, "missing: " + fi_why)
                        continue
                    try:
                        us, reps, how, tok = time_cuda(torch, lambda s: flashinfer_pipeline(torch, fi, s, t, k, p, min_p), sets)
                        emit("flashinfer", B, V, dt, mname, us, reps, how)
                    except Exception as e:  # noqa: BLE001
                        emit("flashinfer", B, V, dt, mname, 0.0, 0, f"failed: {type(e).__name__}: {str(e)[:80]}")
                if not over:
                    del sets
                    torch.cuda.empty_cache()
    if out:
        out.close()
    print(f"gpu_headline peers: {time.time() - t_start:.0f} s", flush=True)
    return 0


# --------------------------------------------------------------- report
def load(paths):
    rows = []
    for path in paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for r in csv.DictReader(f):
                try:
                    r["rows"], r["vocab"], r["us"] = int(r["rows"]), int(r["vocab"]), float(r["us_per_call"])
                    r["floor_us"] = float(r["floor_us"])
                except (KeyError, ValueError):
                    continue
                rows.append(r)
    return rows


def fmt(us):
    return "—" if not us else (f"{us:,.0f}" if us >= 100 else f"{us:.1f}")


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "—"


def report(paths):
    rows = load(paths)
    floors = [r for r in rows if r["backend"].startswith("copy-floor")]
    data = [r for r in rows if not r["backend"].startswith("copy-floor")]
    by = defaultdict(dict)
    floor_of = {}
    notes = {}
    for r in data:
        key = (r["dtype"], r["method"], r["vocab"], r["rows"])
        if r["us"] > 0:
            by[key][r["backend"]] = r["us"]
        elif r.get("note"):
            notes.setdefault(r["backend"], r["note"])
        if r["backend"].startswith("cuda-") and r["floor_us"] > 0:
            floor_of[key] = r["floor_us"]
    print("# GPU headline: kiln against PyTorch and FlashInfer, same GPU, same run")
    print()
    for f in floors:
        print(f"- {f['backend']}: {f['gbps']} GB/s ({f['note']})")
    for b, n in sorted(notes.items()):
        print(f"- {b}: {n}")
    print("- µs per call: median of CUDA-graph replays timed with CUDA events; floor = the "
          "logits read once at kiln-gpu-bench's copy bandwidth")
    print("- ratios are times: kiln (cuda-auto) / peer, below 1 = kiln takes less time; "
          "kiln/floor = how many times the floor kiln takes")
    print()
    groups = sorted({(k[0], k[1]) for k in by}, key=lambda g: (g[0], list(METHODS).index(g[1]) if g[1] in METHODS else 99))
    for dt, m in groups:
        print(f"### {m}, {dt}")
        print()
        print("| V | B | kiln cuda-auto µs | kiln cuda-rows µs | kiln cuda-sort µs | torch µs | FlashInfer µs "
              "| floor µs | kiln/torch | kiln/FlashInfer | kiln/floor |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for key in sorted(k for k in by if k[0] == dt and k[1] == m):
            v = by[key]
            kiln = v.get("cuda-auto")
            fl = floor_of.get(key)
            print(f"| {key[2]} | {key[3]} | {fmt(kiln)} | {fmt(v.get('cuda-rows'))} | {fmt(v.get('cuda-sort'))} "
                  f"| {fmt(v.get('torch-cuda'))} "
                  f"| {fmt(v.get('flashinfer'))} | {fmt(fl)} | {ratio(kiln, v.get('torch-cuda'))} "
                  f"| {ratio(kiln, v.get('flashinfer'))} | {ratio(kiln, fl)} |")
        print()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("peers")
    p.add_argument("--csv")
    p.add_argument("--rows", default="1,64,256")
    p.add_argument("--vocab", default="32000,128256,151936")
    p.add_argument("--dtypes", default="f32,bf16")
    p.add_argument("--methods", default="t0.7_k50_p0.9,top_p0.9,min_p0.05,plain")
    p.add_argument("--budget-s", type=float, default=90.0)
    p.add_argument("--fi-jit-s", type=float, default=45.0)
    r = sub.add_parser("report")
    r.add_argument("csvs", nargs="+")
    a = ap.parse_args()
    return peers(a) if a.cmd == "peers" else report(a.csvs)


if __name__ == "__main__":
    sys.exit(main())
