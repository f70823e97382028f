#!/usr/bin/env python3
"""Turns kiln-bench and torch_baseline CSVs into a markdown table and a plot.

  report.py OUT_DIR kiln.csv [torch.csv ...] [--method M] [--dtype D]

Writes OUT_DIR/table.md (the headline method across every shape, with the
ratios that matter: kiln against PyTorch on the same device, select against
sort, GPU over CPU, % of the bandwidth floor) and OUT_DIR/plot.png
(throughput against batch size, one panel per vocabulary, one line per
backend, the bandwidth floor drawn in).
"""
import argparse
import csv
import os
from collections import defaultdict


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            for r in csv.DictReader(f):
                r["rows"] = int(r["rows"])
                r["vocab"] = int(r["vocab"])
                r["us"] = float(r["us_per_call"])
                r["floor_us"] = float(r["floor_us"])
                rows.append(r)
    return rows


def fmt(us):
    return "—" if not us else (f"{us:,.0f}" if us >= 100 else f"{us:.1f}")


def ratio(a, b):
    return f"{a / b:.1f}×" if a and b else "—"


def table(rows, method, dtype):
    by = defaultdict(dict)
    floors = {}
    for r in rows:
        if r["method"] != method or r["dtype"] != dtype or r["us"] <= 0:
            continue
        key = (r["vocab"], r["rows"])
        by[key][r["backend"]] = r["us"]
        floors[(key, r["backend"])] = r["floor_us"]
    cols = ["cpu-1t", "cpu-1t-sort", "torch-cpu-1t", "cpu-all", "torch-cpu-all",
            "cuda-auto", "cuda-sort", "torch-cuda", "torch-cuda-exp", "flashinfer"]
    present = [c for c in cols if any(c in v for v in by.values())]
    head = "| V | B | " + " | ".join(f"{c} µs" for c in present) + \
        " | kiln 1t vs torch 1t | select vs sort (1t) | GPU over CPU | GPU % of floor |"
    lines = [f"### {method}, {dtype}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for (V, B) in sorted(by):
        v = by[(V, B)]
        gpu = v.get("cuda-auto")
        cpu_best = min([x for x in (v.get("cpu-all"), v.get("cpu-1t")) if x], default=None)
        floor = floors.get(((V, B), "cuda-auto"))
        cells = [fmt(v.get(c)) for c in present]
        lines.append(f"| {V} | {B} | " + " | ".join(cells) +
                     f" | {ratio(v.get('torch-cpu-1t'), v.get('cpu-1t'))}"
                     f" | {ratio(v.get('cpu-1t-sort'), v.get('cpu-1t'))}"
                     f" | {ratio(cpu_best, gpu)}"
                     f" | {f'{100 * floor / gpu:.0f}%' if floor and gpu else '—'} |")
    return "\n".join(lines) + "\n"


def cpu_summary(rows):
    """Issue 11's view: one thread, one row, every method against the read
    floor measured in the same run, bf16 against f32, and two threads over
    one at the largest batch."""
    by = {(r["backend"], r["rows"], r["vocab"], r["dtype"], r["method"]): r for r in rows}
    vocabs = sorted({r["vocab"] for r in rows if r["backend"] == "cpu-1t" and r["rows"] == 1})
    methods = sorted({r["method"] for r in rows if r["backend"] == "cpu-1t"})
    big = max((r["rows"] for r in rows if r["backend"] == "cpu-all"), default=None)
    out = ["### CPU, one thread, one row: x the read floor, bf16 / f32"
           + (f", two threads over one at B = {big}" if big else ""), ""]
    out.append("| V | method | f32 us | x floor | bf16 us | x floor | bf16 / f32 |"
               + (" 2 threads / 1 (f32) |" if big else ""))
    out.append("|---|---|---|---|---|---|---|" + ("---|" if big else ""))
    for V in vocabs:
        for m in methods:
            f = by.get(("cpu-1t", 1, V, "f32", m))
            h = by.get(("cpu-1t", 1, V, "bf16", m))
            if not f and not h:
                continue
            cells = [str(V), m]
            for r in (f, h):
                cells += [fmt(r["us"]) if r else "—",
                          f"{r['us'] / r['floor_us']:.1f}" if r and r["floor_us"] > 0 else "—"]
            cells.append(f"{h['us'] / f['us']:.2f}" if f and h else "—")
            if big:
                one = by.get(("cpu-1t", big, V, "f32", m))
                two = by.get(("cpu-all", big, V, "f32", m))
                cells.append(f"{one['us'] / two['us']:.2f}" if one and two else "—")
            out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot(rows, method, dtype, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sel = [r for r in rows if r["method"] == method and r["dtype"] == dtype and r["us"] > 0]
    vocabs = sorted({r["vocab"] for r in sel})
    if not vocabs:
        return False
    fig, axes = plt.subplots(1, len(vocabs), figsize=(4.2 * len(vocabs), 4), sharey=True, squeeze=False)
    for ax, V in zip(axes[0], vocabs):
        series = defaultdict(list)
        floors = defaultdict(dict)
        for r in sel:
            if r["vocab"] != V:
                continue
            series[r["backend"]].append((r["rows"], r["rows"] / (r["us"] * 1e-6)))
            if r["floor_us"] > 0:
                dev = "GPU" if "cuda" in r["backend"] or r["backend"] == "flashinfer" else "CPU"
                floors[dev][r["rows"]] = r["rows"] / (r["floor_us"] * 1e-6)
        for name in sorted(series):
            pts = sorted(series[name])
            style = "-" if not name.startswith(("torch", "flashinfer")) else "--"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", ms=3, label=name)
        for dev, pts in floors.items():
            xs = sorted(pts)
            ax.plot(xs, [pts[x] for x in xs], ":", color="black" if dev == "GPU" else "gray",
                    label=f"{dev} bandwidth floor")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"V = {V}")
        ax.set_xlabel("batch size (rows)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("sampled tokens per second")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"kiln vs PyTorch: {method}, {dtype} logits")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("csvs", nargs="+")
    ap.add_argument("--method", default="t0.7_k50_p0.9")
    ap.add_argument("--dtype", default="f32")
    a = ap.parse_args()
    rows = load(a.csvs)
    os.makedirs(a.out_dir, exist_ok=True)
    methods = sorted({r["method"] for r in rows}, key=lambda m: (m != a.method, m))
    dtypes = sorted({r["dtype"] for r in rows})
    with open(os.path.join(a.out_dir, "table.md"), "w") as f:
        f.write(cpu_summary(rows) + "\n")
        for d in dtypes:
            for m in methods:
                f.write(table(rows, m, d) + "\n")
    try:
        plot(rows, a.method, a.dtype, os.path.join(a.out_dir, "plot.png"))
    except ImportError:
        print("report.py: matplotlib missing, no plot")


if __name__ == "__main__":
    main()
