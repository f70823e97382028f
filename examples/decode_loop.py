#!/usr/bin/env python3
"""kiln decode loop (Python): text from a word bigram model, one kiln call per step.

The same program as decode_loop.c, through the `kiln` Python package; both
print the same text. A bigram model of ngram/coriolanus.txt (add-k
smoothing, logits = log(count + k)) gives the next-word logits; every step
samples all scenarios at once, one row each, with per-row temperature,
top-p, penalties and seeds, and the history for the penalties. It shows what
the textbook says: greedy falls into ", and, and, and"; temperature and
top-p give varied text; a repetition penalty breaks the loop (for a while),
a frequency penalty for good; a fixed seed gives the same text again, and
the same on the GPU as on the CPU when PyTorch sees one.

    python examples/decode_loop.py [--cpu] [--steps N] [TEXT]
"""
import argparse
import math
import os
import sys

import numpy as np

import kiln

SMOOTHING = 0.001  # add-k
PROMPT = "the people"
PUNCT = ".,;:!?"

# name, temperature, top_p, repetition_penalty, frequency_penalty, seed
SCENARIOS = [
    ("greedy (T = 0)", 0.0, 1.0, 1.0, 0.0, 0),
    ("T = 1.0, seed 1", 1.0, 1.0, 1.0, 0.0, 1),
    ("T = 0.7, top-p = 0.9, seed 1", 0.7, 0.9, 1.0, 0.0, 1),
    ("greedy + repetition penalty 1.3 (once per word used)", 0.0, 1.0, 1.3, 0.0, 0),
    ("greedy + frequency penalty 0.5 (per use)", 0.0, 1.0, 1.0, 0.5, 0),
    ("T = 0.7, top-p = 0.9, repetition penalty 1.3, seed 7", 0.7, 0.9, 1.3, 0.0, 7),
    ("the same, seed 7 again", 0.7, 0.9, 1.3, 0.0, 7),
]


def tokenize(text):
    """Lower-case words ([a-z']+) and the punctuation marks .,;:!? as tokens.
    Speaker names (a line ending in ':' after a blank line) are skipped."""
    tokens = []
    prev_blank = True
    for line in text.split("\n"):
        s = line.strip(" \t\r")
        if not s:
            prev_blank = True
            continue
        speaker = s.endswith(":") and prev_blank
        prev_blank = False
        if speaker:
            continue
        word = ""
        for ch in s.lower() + " ":
            if "a" <= ch <= "z" or ch == "'":
                word += ch
                continue
            if word.strip("'"):
                tokens.append(word)
            word = ""
            if ch in PUNCT:
                tokens.append(ch)
    return tokens


class Bigram:
    def __init__(self, tokens):
        self.index = {}
        for t in tokens:
            self.index.setdefault(t, len(self.index))
        self.words = list(self.index)
        self.vocab = len(self.words)
        ids = np.array([self.index[t] for t in tokens], np.int64)
        self.counts = np.zeros((self.vocab, self.vocab), np.int32)
        np.add.at(self.counts, (ids[:-1], ids[1:]), 1)
        # logit = f32(log(count + k)), through the C library's log() (math.log)
        # so that the C program computes the very same floats.
        self.table = np.array([math.log(c + SMOOTHING) for c in range(self.counts.max() + 1)],
                              np.float32)

    def logits(self, last):
        return self.table[self.counts[last]]


def generate(model, steps, sample_rows):
    """Every row starts from the prompt; each step samples the next word of
    every row with one kiln call (sample_rows)."""
    prompt = [model.index[w] for w in PROMPT.split()]
    rows = [list(prompt) for _ in SCENARIOS]
    for step in range(steps):
        logits = np.stack([model.logits(r[-1]) for r in rows])
        tokens = sample_rows(logits, rows, len(prompt), step)
        for r, t in zip(rows, tokens):
            r.append(int(t))
    return rows


def params(lib_array):
    cols = list(zip(*[s[1:] for s in SCENARIOS]))
    return dict(temperature=lib_array(cols[0], "float32"), top_p=lib_array(cols[1], "float32"),
                repetition_penalty=lib_array(cols[2], "float32"),
                frequency_penalty=lib_array(cols[3], "float32"),
                seed=lib_array(cols[4], "int64"))


def cpu_sampler():
    p = params(lambda v, dt: np.array(v, dtype=dt))

    def sample_rows(logits, rows, prompt_len, step):
        # offset = step: each step draws fresh random numbers for the same seed.
        return kiln.sample(logits, history=rows, prompt_lengths=prompt_len, offset=step,
                           **p).tokens.tolist()
    return sample_rows


def gpu_sampler():
    """The same calls on the GPU with PyTorch tensors, or None."""
    try:
        import torch
    except ImportError:
        return None, "no PyTorch"
    if not torch.cuda.is_available():
        return None, "PyTorch sees no CUDA device"
    if not kiln.has_cuda():
        return None, "kiln built without CUDA"
    p = params(lambda v, dt: torch.tensor(v, dtype=getattr(torch, dt), device="cuda"))

    def sample_rows(logits, rows, prompt_len, step):
        x = torch.from_numpy(logits).cuda()
        return kiln.sample(x, history=rows, prompt_lengths=prompt_len, offset=step,
                           **p).tokens.tolist()
    return sample_rows, ""


def render(model, ids, width=76, indent="    "):
    """Words joined by spaces, punctuation attached, sentences and 'i'
    capitalised, wrapped at `width` columns."""
    lines, line, cap = [], indent, True
    for t in ids:
        w = model.words[t]
        if w in PUNCT:
            line += w
            cap = w in ".!?"
            continue
        if cap or w == "i" or w.startswith("i'"):
            w = w[0].upper() + w[1:]
        cap = False
        piece = (" " if len(line) > len(indent) else "") + w
        if len(line) + len(piece) > width:
            lines.append(line)
            line = indent + w
        else:
            line += piece
    lines.append(line)
    return "\n".join(lines)


def find_loop(ids, max_period=6):
    """(start, period) of the longest periodic tail repeated >= 3 times, or None."""
    best = None
    for p in range(1, max_period + 1):
        start = len(ids) - p
        while start > 0 and ids[start - 1] == ids[start - 1 + p]:
            start -= 1
        if len(ids) - start >= 3 * p and (best is None or start < best[0]):
            best = (start, p)
    return best


EXPLAIN_ROW = 2  # T = 0.7, top-p = 0.9, seed 1
EXPLAIN_TOP = 5


def explain(model, row, shown):
    """Each generated token of one scenario sampled again alone (a batch of
    one): the raw top-5 candidates, the final distribution's entropy and the
    nucleus size. The token drawn alone must be the batch's: a row's result
    depends only on its logits, parameters, seed and offset."""
    name, temperature, top_p, _, _, seed = SCENARIOS[EXPLAIN_ROW]
    prompt_len = len(PROMPT.split())
    print(f"Step by step: {name}")
    print("  (each token sampled again alone; raw p at T = 1, entropy of the final\n"
          "  distribution in nats, nucleus = tokens top-p keeps)\n")
    print(f"  {'step':<4} {'token':<12} {'entropy':>7} {'nucleus':>7}  top-5 candidates (raw p)")
    mismatches = 0
    for t in range(min(shown, len(row) - prompt_len)):
        r = kiln.sample(model.logits(row[prompt_len + t - 1]), temperature=temperature,
                        top_p=top_p, seed=seed, offset=t, top_logprobs=EXPLAIN_TOP,
                        return_entropy=True)
        token = int(r.tokens)
        same = token == row[prompt_len + t]
        mismatches += not same
        line = f"  {t + 1:<4d} {model.words[token]:<12s} {float(r.entropy):7.3f} " \
               f"{int(r.kept_counts):7d} "
        for i, lp in zip(r.raw_top_ids.tolist(), r.raw_top_logprobs.tolist()):
            if i >= 0:
                line += f" {model.words[i]} {math.exp(lp):.2f}"
        print(line + ("" if same else "  <-- NOT THE BATCH'S TOKEN"))
    print()
    return mismatches


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("text", nargs="?",
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ngram",
                                         "coriolanus.txt"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--cpu", action="store_true", help="do not compare with the GPU")
    args = ap.parse_args()
    with open(args.text, encoding="ascii") as f:
        tokens = tokenize(f.read())
    model = Bigram(tokens)

    print(f"kiln {kiln.version_string()} decode loop: a word bigram model of "
          f"{os.path.basename(args.text)}")
    print(f"{len(tokens)} tokens, {model.vocab} distinct; add-k smoothing (k = {SMOOTHING}), "
          f"logits = log(count + k)")
    print(f"prompt \"{PROMPT}\", {args.steps} steps; each step is one kiln call for all "
          f"{len(SCENARIOS)} rows\n")

    rows = generate(model, args.steps, cpu_sampler())
    for (name, *_), ids in zip(SCENARIOS, rows):
        print(name)
        print(render(model, ids))
        loop = find_loop(ids)
        if loop:
            start, p = loop
            words = "".join(w if w in PUNCT or i == 0 else " " + w
                            for i, w in enumerate(model.words[t] for t in ids[start:start + p]))
            print(f"    -> stuck from token {start + 1} on: \"{words}\" over and over")
        print()
    same = rows[-1] == rows[-2]
    print(f"seed 7 twice: {'the same text' if same else 'DIFFERENT TEXT'}")

    status = 0 if same else 1
    print()
    if explain(model, rows[EXPLAIN_ROW], min(args.steps, 12)) and not status:
        status = 3
    gpu, why = (None, "--cpu given") if args.cpu else gpu_sampler()
    if gpu is None:
        print(f"GPU: not compared ({why})")
    else:
        gpu_rows = generate(model, args.steps, gpu)
        agree = sum(a == b for a, b in zip(rows, gpu_rows))
        print(f"GPU: the same text as the CPU on {agree} of {len(rows)} rows"
              f"{'' if agree == len(rows) else '  <-- MISMATCH'}")
        status = status or (0 if agree == len(rows) else 2)
    return status


if __name__ == "__main__":
    sys.exit(main())
