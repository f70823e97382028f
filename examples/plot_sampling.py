#!/usr/bin/env python3
"""Figures of what kiln's sampler sees, drawn from kiln's own outputs.

    python examples/plot_sampling.py [OUTDIR]      (default: docs/images)

1. temperature.png: the textbook's 9-token row ("Every effort moves you")
   at T = 0.1 ... 3: the final probabilities, and kiln's entropy of the
   final distribution against T (max ln 9), with top-k 3 and top-p 0.9.
2. decode_steps.png: the decode loop's "T = 0.7, top-p = 0.9, seed 1"
   scenario, token by token: the raw top-5 candidates with their
   probabilities, the drawn token marked, the entropy and nucleus size.

Every number comes from kiln.sample (top_logprobs, return_entropy,
kept_counts, return_probs); nothing is recomputed in NumPy. Needs
matplotlib and NumPy.
"""
import math
import os
import sys

import numpy as np

import kiln

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import decode_loop  # noqa: E402  (the same bigram model and scenario)

EFFORT_WORDS = ["closer", "every", "effort", "forward", "inches", "moves", "pizza", "toward",
                "you"]
EFFORT = np.array([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79], np.float32)


def temperature_figure(plt, path):
    temps = [0.1, 0.5, 1.0, 1.5, 3.0]
    order = np.argsort(-EFFORT, kind="stable")
    fig = plt.figure(figsize=(15, 7.5))
    grid = fig.add_gridspec(2, len(temps), height_ratios=[1, 1.1], hspace=0.55)
    colors = ["#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd"]
    for i, (t, c) in enumerate(zip(temps, colors)):
        ax = fig.add_subplot(grid[0, i])
        r = kiln.sample(EFFORT, temperature=t, seed=0, return_probs=True, return_entropy=True)
        ax.bar(range(9), r.probs[order], color=c, alpha=0.85)
        ax.set_xticks(range(9))
        ax.set_xticklabels([EFFORT_WORDS[j] for j in order], rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"T = {t}", fontweight="bold")
        ax.text(0.95, 0.93, f"H = {float(r.entropy):.2f} nat", transform=ax.transAxes,
                ha="right", va="top", fontsize=9,
                bbox=dict(boxstyle="round", facecolor="wheat", alpha=0.5))
        if i == 0:
            ax.set_ylabel("final probability")
    ax = fig.add_subplot(grid[1, :])
    ts = np.geomspace(0.05, 20, 60)
    for label, kw, style in [("T only", {}, "-"), ("top-k 3", {"top_k": 3}, "--"),
                             ("top-p 0.9", {"top_p": 0.9}, ":")]:
        h = [float(kiln.sample(EFFORT, temperature=float(t), seed=0, return_entropy=True,
                               **kw).entropy) for t in ts]
        ax.plot(ts, h, style, lw=2, label=label)
    ax.axhline(math.log(9), color="gray", lw=1)
    ax.text(0.06, math.log(9) - 0.12, "ln 9 (uniform)", color="gray", fontsize=9)
    ax.axhline(math.log(3), color="gray", lw=0.8, ls="--")
    ax.text(0.06, math.log(3) + 0.03, "ln 3 (top-k 3 at most)", color="gray", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("entropy of the final distribution (nat)")
    ax.legend(loc="center right")
    ax.set_title("kiln's entropy against temperature (from the exact integer masses)")
    fig.suptitle('"Every effort moves you": the 9-token vocabulary at five temperatures',
                 fontsize=14)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def decode_figure(plt, path, steps=12):
    text = os.path.join(HERE, "ngram", "coriolanus.txt")
    with open(text, encoding="ascii") as f:
        model = decode_loop.Bigram(decode_loop.tokenize(f.read()))
    name, temperature, top_p, _, _, seed = decode_loop.SCENARIOS[decode_loop.EXPLAIN_ROW]
    row = [model.index[w] for w in decode_loop.PROMPT.split()]
    info = []
    for t in range(steps):
        r = kiln.sample(model.logits(row[-1]), temperature=temperature, top_p=top_p, seed=seed,
                        offset=t, top_logprobs=5, return_entropy=True)
        token = int(r.tokens)
        info.append((token, float(r.entropy), int(r.kept_counts), r.raw_top_ids.tolist(),
                     [math.exp(x) for x in r.raw_top_logprobs.tolist()]))
        row.append(token)
    cols = 4
    fig, axes = plt.subplots(math.ceil(steps / cols), cols, figsize=(16, 3.1 * steps / cols),
                             squeeze=False)
    for k, (ax, (token, h, kept, ids, ps)) in enumerate(zip(axes.flat, info)):
        bars = ax.barh(range(5)[::-1], ps, color=["#1f77b4"] * 5)
        for j, i in enumerate(ids):
            if i == token:
                bars[j].set_color("#d62728")
        ax.set_yticks(range(5)[::-1])
        ax.set_yticklabels([model.words[i] for i in ids], fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_title(f"{k + 1}. drew \"{model.words[token]}\"\nH = {h:.2f} nat, "
                     f"nucleus {kept}", fontsize=10)
        if token not in ids:
            ax.text(0.97, 0.05, "(drawn token\nbelow the top 5)", transform=ax.transAxes,
                    ha="right", fontsize=8, color="#d62728")
    for ax in axes.flat[len(info):]:
        ax.axis("off")
    fig.suptitle(f'Decoding "{decode_loop.PROMPT} ..." with {name}: raw top-5 at T = 1 per '
                 "step (red: the token drawn)", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "docs", "images")
    os.makedirs(out, exist_ok=True)
    temperature_figure(plt, os.path.join(out, "temperature.png"))
    decode_figure(plt, os.path.join(out, "decode_steps.png"))
    print(f"wrote temperature.png and decode_steps.png to {out}")


if __name__ == "__main__":
    main()
