#!/usr/bin/env python3
"""lm-head-bench's shapes through PyTorch: torch.matmul (the LM head) alone,
and torch.matmul + the PyTorch sampling pipeline of torch_baseline.py
(temperature 0.7, top-k 50, top-p 0.9, multinomial), at H = 4096,
V = 128256, B in {1, 64, 256} by default. Writes lm-head-bench's CSV columns
(backend,rows,hidden,vocab,dtype,what,us_per_call,reps); GPU times are CUDA
events around CUDA-graph replays where capture works (torch_baseline's
time_cuda), CPU times the median of >= 5 calls.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_baseline as tb  # noqa: E402  (exits 3 when torch is missing)
import torch  # noqa: E402

METHOD = tb.METHODS["t0.7_k50_p0.9"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--csv")
    ap.add_argument("--device", default="cuda", choices=["cpu", "cuda"])
    ap.add_argument("--rows", default="1,64,256")
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    args = ap.parse_args()
    dt = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}[args.dtype]
    dev = torch.device(args.device)
    out = open(args.csv, "w") if args.csv else None
    if out:
        out.write("backend,rows,hidden,vocab,dtype,what,us_per_call,reps\n")
    H, V = args.hidden, args.vocab
    weight = (torch.rand(V, H, device=dev) * 0.1 - 0.05).to(dt)
    for B in [int(b) for b in args.rows.split(",")]:
        sets = [(torch.rand(B, H, device=dev) * 2 - 1).to(dt) for _ in range(2)]

        def head(h):
            return torch.matmul(h, weight.t()).float()

        def head_and_sample(h):
            return tb.sample(head(h), METHOD, None, 0)

        for what, fn in (("gemm_only", head), ("hidden+sample", head_and_sample)):
            if dev.type == "cuda":
                us, reps, how = tb.time_cuda(fn, sets)
            else:
                us, reps = tb.time_cpu(fn, sets, 300.0)
            name = "torch-" + dev.type
            print(f"| {name} | {B:4d} | {H} | {V} | {args.dtype} | {what:13s} | {us:12.1f} | {reps} |")
            if out:
                out.write(f"{name},{B},{H},{V},{args.dtype},{what},{us:.3f},{reps}\n")
    if out:
        out.close()


if __name__ == "__main__":
    main()
