#!/usr/bin/env python3
"""Speculative-decoding verification: kiln_verify_drafts against the same
rule written in PyTorch, in the same run (issue 12).

    python bench/verify_bench.py [--quick] [--threads N] [--device cpu|cuda] [--out FILE]

For B in {1, 32, 64}, V = 128256, K in {1, 4, 8}: target logits [B, K+1, V]
(Zipf-law rows with noise), drafts drawn from a draft distribution q
[B, K, V] (the target's logits plus N(0, 0.5) noise, the same T and top-p),
T 0.7 + top-p 0.9 at every position.

  kiln    kiln.verify_drafts (one call: per position the final distribution
          of kiln_sample, the accept test and residual in integers)
  torch   the rule as serving stacks write it (vLLM's rejection sampler):
          softmax of logits / T, top-p by a sort and cumsum mask, accept
          while u < p(d) / q(d), the residual max(0, p - q) at the first
          rejection and the bonus token by torch.multinomial
  flashinfer  chain_speculative_sampling on probabilities, on a GPU when
          flashinfer imports (the same filtered target probabilities)

Median of >= 5 calls after a warm-up (time.perf_counter; CUDA: synchronised).
Timings, not tests.
"""
import argparse
import statistics
import sys
import time

import numpy as np

try:
    import torch
except ImportError:
    sys.exit("verify_bench: needs PyTorch (pip install torch)")

import kiln


def zipf_rows(n, V, seed):
    rng = np.random.default_rng(seed)
    out = np.empty((n, V), np.float32)
    for r in range(n):
        rank = rng.permutation(V) + 1
        out[r] = -1.1 * np.log(rank) + rng.normal(0, 0.3, V)
    return out


def top_p_probs(logits, T, p):
    """softmax(logits / T) restricted to the top-p nucleus, renormalised."""
    probs = torch.softmax(logits / T, dim=-1)
    sorted_p, idx = probs.sort(dim=-1, descending=True)
    cum = sorted_p.cumsum(dim=-1)
    drop = cum - sorted_p > p  # keep the shortest prefix reaching p
    sorted_p = sorted_p.masked_fill(drop, 0.0)
    out = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    return out / out.sum(dim=-1, keepdim=True)


def torch_verify(target_logits, drafts, q, T, p, gen):
    B, P, V = target_logits.shape
    K = P - 1
    probs = top_p_probs(target_logits, T, p)  # [B, K+1, V]
    pd = probs[:, :K].gather(-1, drafts.unsqueeze(-1)).squeeze(-1)
    qd = q.gather(-1, drafts.unsqueeze(-1)).squeeze(-1)
    u = torch.rand((B, K), generator=gen, device=target_logits.device)
    accept = u * qd < pd
    accepted = accept.int().cumprod(dim=1).sum(dim=1)  # drafts before the first rejection
    rows = torch.arange(B, device=target_logits.device)
    at = accepted.clamp(max=K)
    pos_p = probs[rows, at]
    residual = (pos_p - torch.where((accepted < K).unsqueeze(-1), q[rows, at.clamp(max=K - 1)],
                                    torch.zeros_like(pos_p))).clamp(min=0)
    empty = residual.sum(dim=-1, keepdim=True) == 0
    residual = torch.where(empty, pos_p, residual)
    last = torch.multinomial(residual, 1, generator=gen).squeeze(-1)
    out = torch.full((B, P), -1, dtype=torch.int64, device=target_logits.device)
    keep = torch.arange(P, device=target_logits.device).unsqueeze(0) < accepted.unsqueeze(1)
    out[:, :K] = torch.where(keep[:, :K], drafts, out[:, :K])
    out[rows, accepted] = last
    return out, accepted


def median_us(fn, reps, sync):
    fn()
    sync()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="V = 4096, B in {1, 4}, K in {1, 4}")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for both (default 1)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", help="also write the table here")
    args = ap.parse_args()
    V = 4096 if args.quick else 128256
    Bs = [1, 4] if args.quick else [1, 32, 64]
    Ks = [1, 4] if args.quick else [1, 4, 8]
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    try:
        import flashinfer  # noqa: F401
        have_fi = dev.type == "cuda"
    except ImportError:
        have_fi = False
    T, p = 0.7, 0.9
    lines = [f"verify_bench: kiln {kiln.version_string()}, torch {torch.__version__}, device "
             f"{args.device}, {args.threads} thread(s), V = {V}, T {T} + top-p {p}, median of "
             f"{args.reps}, µs per call", "",
             "| B | K | kiln µs | torch µs | torch / kiln | kiln mean accepted | flashinfer µs |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    gen = torch.Generator(device=dev).manual_seed(0)
    for B in Bs:
        base = torch.from_numpy(zipf_rows(B * (max(Ks) + 1), V, B)).to(dev)
        for K in Ks:
            x = base[: B * (K + 1)].reshape(B, K + 1, V).contiguous()
            # the draft model: the target's logits with noise, same T and top-p
            noise = torch.randn(x[:, :K].shape, generator=gen, device=dev) * 0.5
            q = top_p_probs(x[:, :K] + noise, T, p).contiguous()
            drafts = torch.multinomial(q.reshape(B * K, V), 1, generator=gen).reshape(B, K)
            d32 = drafts.to(torch.int32)
            seeds = torch.arange(B, dtype=torch.int64, device=dev)
            res = {}

            def run_kiln():
                res["k"] = kiln.verify_drafts(x, d32, draft_probs=q, temperature=T, top_p=p,
                                              seed=seeds, offset=0, num_threads=args.threads)

            t_kiln = median_us(run_kiln, args.reps, sync)
            t_torch = median_us(lambda: torch_verify(x, drafts, q, T, p, gen), args.reps, sync)
            acc = float(res["k"].num_accepted.float().mean())
            fi = "—"
            if have_fi:
                import flashinfer
                tp = top_p_probs(x, T, p)
                fi = f"{median_us(lambda: flashinfer.chain_speculative_sampling(q, d32, tp), args.reps, sync):.0f}"
            line = (f"| {B} | {K} | {t_kiln:.0f} | {t_torch:.0f} | {t_torch / t_kiln:.1f}x | "
                    f"{acc:.2f} | {fi} |")
            print(line, flush=True)
            lines.append(line)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
