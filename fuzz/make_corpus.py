#!/usr/bin/env python3
"""Writes the seed corpus of fuzz/fuzz_sample.c into fuzz/corpus/.

Each seed is one kiln call in the byte layout LLVMFuzzerTestOneInput
decodes (the comments below follow the decoder, front to back). The seeds
are deterministic (fixed random seeds) and named by what they exercise:

  seed-ok-*        valid calls: every dtype, shape, filter, penalty, output
                   mask, stride, logits shape (NaN/inf/denormal/all-equal)
  seed-bad-*       one bad-input class of docs/semantics.md section 12 each
  seed-ptr-*       deliberate pointer mistakes (NULL, misaligned, overlapping)
  seed-bon-*       kiln_best_of_n
  seed-cfg-*       kiln_sampler_create with raw configuration fields
  seed-ext-*       the extension after the logits ("KX"): token mask, logit
                   bias, dynatemp, top-N/rank/entropy/temperature outputs,
                   kiln_score and kiln_verify_drafts, valid (seed-ext-ok-*,
                   ...) and hostile (seed-ext-bad-*); written from their own
                   random stream, so the other seeds stay byte for byte

Files the fuzzer found (crash-*, regress-*) live in the same directory and
are never touched here; seed-* files are rewritten.

    fuzz/make_corpus.py [OUT_DIR]
"""
import os
import random
import struct
import sys

# --------------------------------------------------------------- encoding

PALETTE = {  # index in fuzz_sample.c's palette[]
    "0": 0, "-0": 1, "1": 2, "-1": 3, "0.5": 4, "2": 5,
    "nan": 6, "-nan": 7, "snan": 8, "nanmax": 9,
    "inf": 10, "-inf": 11, "max": 12, "-max": 13,
    "min": 14, "-min": 15, "den": 16, "-den": 17, "denmax": 18, "-denmax": 19,
    "1+ulp": 20, "1-ulp": 21, "1e-30": 22, "1e30": 23,
    "100": 24, "-100": 25, "88.72": 26, "-88.72": 27,
    "40": 28, "-40": 29, "64": 30, "-64": 31,
    "2^24": 32, "-2^24": 33, "1e-7": 34, "1e-3": 35,
    "0.7": 36, "0.9": 37, "0.1": 38, "3": 39,
}
NPALETTE = 40
P_TEMP, P_TOPK, P_TOPP, P_MINP, P_REP, P_PRES, P_FREQ, P_SEED, P_OFFSET = range(9)
FLOAT_PARAMS = (P_TEMP, P_TOPP, P_MINP, P_REP, P_PRES, P_FREQ)
(MOD_NULL_SAMPLER, MOD_NULL_BATCH, MOD_NULL_PARAMS, MOD_NULL_OUTPUTS, MOD_NULL_LOGITS,
 MOD_NULL_TOKENS, MOD_NULL_WS, MOD_NULL_IDS, MOD_NULL_OFFSETS, MOD_MISALIGN, MOD_OVERLAP,
 MOD_SHARE_INPUT) = range(12)
NMOD = 12


class Enc:
    def __init__(self):
        self.b = bytearray()

    def u8(self, v):
        self.b += struct.pack("<B", v & 0xFF)

    def u16(self, v):
        self.b += struct.pack("<H", v & 0xFFFF)

    def u32(self, v):
        self.b += struct.pack("<I", v & 0xFFFFFFFF)

    def u64(self, v):
        self.b += struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)

    # a float the decoder's palette_or_raw() reads
    def value(self, v):
        if isinstance(v, str):
            self.u8(PALETTE[v])
        elif isinstance(v, float):
            self.u8(40)
            self.u32(struct.unpack("<I", struct.pack("<f", v))[0])
        else:  # small number in eighths: s = 160 + 8 v, v in [-12, 12]
            self.u8(160 + int(round(v * 8)))


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


# A float parameter as param_f32() reads it: a palette name, ("raw", float),
# or ("t", fraction in [0, 1]) for the parameter's typical range.
def enc_param(e, v):
    if isinstance(v, str):
        e.u8(PALETTE[v])
    elif v[0] == "raw":
        e.u8(40)
        e.u32(f32_bits(v[1]))
    else:
        e.u8(64 + int(round(v[1] * 191)))


def enc_top_k(e, k, V):
    if isinstance(k, int) and 0 <= k < min(V + 2, 200):
        e.u8(k)  # s < 200: s % (V + 2)
    else:  # hostile: s % 8 picks; 7 is raw
        table = {-1: 0, "min": 1, "max": 2, "V-1": 3, "V": 4, "one": 5, "V+1": 6}
        if k in table:
            e.u8(200 + table[k])
        else:
            e.u8(207)
            e.u32(k)


def enc_u64param(e, v):
    if 0 <= v < 128:
        e.u8(v)
    else:
        e.u8(128)
        e.u64(v)


# --------------------------------------------------------- one sample call

class Call:
    """Every choice of one kiln_sample case, with defaults for a clean call."""

    def __init__(self, rng):
        self.rng = rng
        self.algorithm = 0
        self.threads = 1
        self.max_batch = 4
        self.max_vocab = 32
        self.max_samples = 2
        self.max_history = 0
        self.rows = 2
        self.V = 16
        self.n = 1
        self.alt = 0
        self.dtype = 0          # or ("bad", selector byte 250..255[, raw])
        self.num_rows = None    # hostile selector bytes for decode_count
        self.vocab = None
        self.num_samples = None
        self.stride = 0         # selector byte
        self.stride_raw = None
        self.pstride = 0
        self.pstride_raw = None
        self.sizes = [0, 0, 0]  # struct size selectors (batch, params, outputs)
        self.size_args = [None, None, None]
        self.want = 31
        self.ws = 0             # selector
        self.ws_arg = None
        self.mods = []          # (kind, a, b, c)
        self.arrays = 0
        self.scalars = {}       # param -> value
        self.per_row = {}       # param -> list of values
        self.hist = 0
        self.lens = []
        self.ids = []           # per row lists of encoder bytes (s) or ("raw", v)
        self.prompts = []
        self.corrupt = None     # (selector >= 240, j byte)
        self.rows_data = []     # per row: (mode, args)

    def encode(self):
        e = Enc()
        e.u8(0)  # op: sample
        flags = self.algorithm | (self.threads << 2) | (16 if self.max_history else 0)
        e.u8(flags)
        e.u8(self.max_batch - 1)
        if self.max_vocab <= 64:
            e.u8(self.max_vocab - 1)
        elif self.max_vocab <= 2048:
            e.u8(192)
            e.u16(self.max_vocab - 1)
        else:  # 16384 + u16 % 4096
            e.u8(248)
            e.u16(self.max_vocab - 16384)
        e.u8(self.max_samples - 1)
        if self.max_history:
            e.u8(self.max_history)
        max_rows = min(self.max_batch, 8)
        max_vocab = min(self.max_vocab, 16384 + 4096)
        max_hist = min(self.max_history, 12)
        assert 1 <= self.rows <= max_rows and 1 <= self.V <= max_vocab
        e.u8(self.rows - 1)
        e.u16(self.V - 1)
        e.u8(self.n - 1)
        e.u8(self.alt)
        if isinstance(self.dtype, tuple):
            e.u8(self.dtype[1])
            if self.dtype[1] >= 254:
                e.u32(self.dtype[2])
        else:
            e.u8(self.dtype)
        for sel, raw64 in ((self.num_rows, True), (self.vocab, True), (self.num_samples, False)):
            if sel is None:
                e.u8(0)
            else:
                e.u8(sel[0])
                if sel[0] >= 254:
                    (e.u64 if raw64 else e.u32)(sel[1])
        for sel, raw in ((self.stride, self.stride_raw), (self.pstride, self.pstride_raw)):
            e.u8(sel)
            if sel >= 224 and sel % 8 == 7:
                e.u64(raw)
        for sel, arg in zip(self.sizes, self.size_args):
            e.u8(sel)
            if 248 <= sel <= 251:
                e.u8(arg)
            elif sel == 255:
                e.u64(arg)
        e.u8(self.want)
        e.u8(self.ws)
        if 224 <= self.ws < 248:
            e.u8(self.ws_arg)
        for kind, a, b, c in self.mods:
            e.u8(208 + kind)
            e.u8(a)
            e.u8(b)
            e.u8(c)
        if len(self.mods) < 3:
            e.u8(0)
        e.u16(self.arrays)
        for p in range(9):
            vals = [self.scalars.get(p, default_param(p))]
            if self.arrays >> p & 1:
                vals += self.per_row[p]
            for v in vals:
                if p == P_TOPK:
                    enc_top_k(e, v, self.V)
                elif p >= P_SEED:
                    enc_u64param(e, v)
                else:
                    enc_param(e, v)
        if self.max_history or self.arrays >> 12 & 1:
            e.u8(self.hist)
        if self.hist & 1:
            for ln in self.lens:
                e.u8(ln)
            for row in self.ids:
                for s in row:
                    if isinstance(s, tuple):
                        e.u8(245)  # 245 % 6 == 5: raw
                        e.u32(s[1])
                    else:
                        e.u8(s)
            if self.hist & 2:
                for s in self.prompts:
                    e.u8(s)
            if self.corrupt:
                e.u8(self.corrupt[0])
                e.u8(self.corrupt[1])
            else:
                e.u8(0)
        for mode, data in self.rows_data:
            e.u8(mode)
            data(e)
        return bytes(e.b)


def default_param(p):
    return {P_TEMP: "1", P_TOPK: 0, P_TOPP: "1", P_MINP: "0", P_REP: "1", P_PRES: "0",
            P_FREQ: "0", P_SEED: 0, P_OFFSET: 0}[p]


# ------------------------------------------------------------ logits rows

def row_random(rng, V, dtype):
    """One row generator of decode_row(): (mode byte, writer)."""
    mode = rng.randrange(10)
    pal = list(PALETTE)

    def some_value():
        r = rng.random()
        if r < 0.5:
            return rng.uniform(-12, 12)
        if r < 0.8:
            return rng.choice(["0", "-0", "1", "-1", "2", "3", "0.5", "100", "-100", "-inf",
                               "1e-30", "den", "min", "max", "-max", "40", "-40", "64"])
        return rng.choice(pal)

    def w(e):
        if mode in (0, 7):
            e.value(some_value())
        if mode == 3:
            e.u8(rng.randrange(256))
            e.u8(rng.randrange(256))
            e.value(rng.choice([0.5, 1, -1, "1e-3", "den", "100"]))
        if mode == 5:
            e.u8(rng.randrange(256))
        for _ in range(V):
            if mode == 1:
                e.value(some_value())
            elif mode == 2:
                if dtype == 0:
                    e.u32(f32_bits(rng.gauss(0, 3)) if rng.random() < 0.9 else rng.getrandbits(32))
                else:
                    e.u16(rng.getrandbits(16) if rng.random() < 0.3 else
                          rng.choice([0x3C00, 0x4000, 0xBC00, 0x0001, 0x7C00, 0xFC00, 0x3F80,
                                      0x4000 + rng.randrange(0x400), 0x3800 + rng.randrange(0x800)]))
            elif mode in (6, 7, 8, 9):
                e.u8(rng.randrange(256))
        if mode == 4:
            cnt = rng.randrange(3)
            e.u8(cnt)
            for _ in range(cnt + 1):
                e.u16(rng.randrange(V))
                e.value(some_value())
    return mode, w


def row_mode(mode, V, value=None, dtype=0, rng=None):
    """A row of a fixed kind: 'equal' (all `value`), 'palette' (values)."""
    def w(e):
        if mode == 0:
            e.value(value)
        elif mode == 1:
            for i in range(V):
                e.value(value[i % len(value)])
        elif mode == 9:
            for i in range(V):
                e.u8(value[i % len(value)])
    return mode, w


def row_gauss(rng, V, dtype, scale=3.0):
    def w(e):
        for _ in range(V):
            x = rng.gauss(0, scale)
            if dtype == 0:
                e.u32(f32_bits(x))
            else:  # binary16 or bfloat16 bits of x, truncated
                b = f32_bits(x)
                if dtype == 2:
                    e.u16(b >> 16)
                else:
                    e.u16(struct.unpack("<H", struct.pack("<e", x))[0])
    return 2, w


# ------------------------------------------------------------- generators

def clean_call(rng, small=True):
    c = Call(rng)
    c.algorithm = rng.randrange(3)
    c.threads = rng.randrange(4)
    c.max_batch = rng.randrange(1, 9)
    c.max_vocab = rng.choice([1, 2, 3, 7, 16, 33, 64]) if small else rng.choice([100, 257, 1000, 2048])
    c.max_samples = rng.randrange(1, 5)
    c.max_history = rng.choice([0, 0, 1, 4, 11])
    c.rows = rng.randrange(1, c.max_batch + 1)
    c.V = rng.randrange(1, c.max_vocab + 1)
    c.n = rng.randrange(1, c.max_samples + 1)
    c.alt = rng.randrange(256)
    c.dtype = rng.choice([0, 0, 1, 2])
    c.stride = rng.choice([0, 0, 128 + rng.randrange(96)])
    c.pstride = rng.choice([0, 0, 128 + rng.randrange(96)])
    c.want = rng.randrange(32)
    c.ws = rng.choice([0, 0, 0, 224, 240])
    if c.ws:
        c.ws_arg = rng.randrange(256)
    c.arrays = 0
    for p in range(9):
        if rng.random() < 0.3:
            c.arrays |= 1 << p
    for p in range(9):
        c.scalars[p] = sane_param(rng, p, c.V)
        if c.arrays >> p & 1:
            c.per_row[p] = [sane_param(rng, p, c.V) for _ in range(c.rows)]
    if c.max_history and rng.random() < 0.8:
        c.hist = 1 | (2 if rng.random() < 0.6 else 0) | (rng.randrange(4) << 2)
        c.lens = [rng.randrange(c.max_history + 1) for _ in range(c.rows)]
        c.ids = [[rng.randrange(240) for _ in range(ln)] for ln in c.lens]
        c.prompts = [rng.randrange(240) for _ in range(c.rows)]
    c.rows_data = [row_random(rng, c.V, c.dtype) if rng.random() < 0.6 else
                   row_gauss(rng, c.V, c.dtype) for _ in range(c.rows)]
    return c


def sane_param(rng, p, V):
    if p == P_TEMP:
        return rng.choice(["0", "1", ("t", rng.random()), ("t", rng.random()), "0.7", "2", "1e-3",
                           "1e-30", "den", "100", "1e30", "max", "-0"])
    if p == P_TOPK:
        return rng.choice([0, 0, 1, 2, rng.randrange(V + 2), -1, "max", "min", "V-1", "V"])
    if p == P_TOPP:
        return rng.choice(["1", "1", "0.9", "0.5", "0.1", ("t", rng.random() * 0.99 + 0.01),
                           "den", "1e-30", "1-ulp", "min"])
    if p == P_MINP:
        return rng.choice(["0", "0", "0.1", "1", "0.5", ("t", rng.random()), "den", "1e-7",
                           "-0"])
    if p == P_REP:
        return rng.choice(["1", "1", ("t", rng.random()), "2", "1e-30", "den", "max", "1e30",
                           "0.5"])
    if p in (P_PRES, P_FREQ):
        return rng.choice(["0", "0", ("t", rng.random()), "1", "-1", "max", "-max", "100",
                           "-0", "1e30"])
    return rng.choice([0, 1, 7, 127, 2**64 - 1, 2**63, 2**32, rng.getrandbits(64)])


BAD_PARAM = {
    P_TEMP: ["nan", "-nan", "inf", "-inf", "-1", "-den", "snan", "-min"],
    P_TOPP: ["0", "-0", "1+ulp", "2", "nan", "inf", "-1", "-den"],
    P_MINP: ["-1", "1+ulp", "2", "nan", "inf", "-den", "-min"],
    P_REP: ["0", "-0", "-1", "nan", "inf", "-inf", "-den"],
    P_PRES: ["nan", "inf", "-inf", "snan"],
    P_FREQ: ["nan", "inf", "-inf", "nanmax"],
}
NAMES = {P_TEMP: "temperature", P_TOPP: "top_p", P_MINP: "min_p", P_REP: "repetition",
         P_PRES: "presence", P_FREQ: "frequency"}


# ------------------------------------------------------------ the extension

# fuzz_sample.c's decode_ext(): after the logits, "KX" then a feature byte
# and the bytes of each feature (see the comment above decode_ext).
F_MASK, F_BIAS, F_DYN, F_OUTS, F_SCORE, F_SIZES, F_VERIFY = 1, 2, 4, 8, 16, 32, 64


def enc_dt(e, v):
    """A dynatemp value as dt_value() reads it."""
    if isinstance(v, str):
        e.u8(PALETTE[v])
    elif v[0] == "raw":
        e.u8(40)
        e.u32(f32_bits(v[1]))
    else:  # ("t", fraction): range 3 t, exponent 0.125 + 3 t
        e.u8(64 + int(round(v[1] * 191)))


class Ext:
    def __init__(self):
        self.feat = 0
        self.sizes = (0, 0, 0)
        self.mask_stride = 0          # selector byte
        self.mask_rows = []           # per row: (mode, args)
        self.bias_base = 0
        self.bias_rows = []           # per row: list of (id selector or ("raw", v), value)
        self.bias_counts = None       # per row count selector bytes (default: len)
        self.bias_corrupt = None      # (selector >= 240, j)
        self.bias_ptr = 0
        self.dt_arrays = 0
        self.dt_range = ("t", 0.0)
        self.dt_exp = ("t", (1.0 - 0.125) / 3.0)
        self.dt_range_rows = []
        self.dt_exp_rows = []
        self.mt = 0                   # selector byte for max_top_logprobs
        self.N = 0                    # selector byte
        self.want2 = 0
        self.out_hostile = 0
        self.score_flags = 0
        self.score_size = 0
        self.K = 0
        self.targets = []             # B * K selector bytes
        self.score_want = 0
        self.score_N = 0
        self.kd = 0                   # K selector (< 248: K = kd % rows)
        self.vflags = 0
        self.vwant = 7
        self.pstride = 0
        self.dsize = 0
        self.num_drafts = []          # per request selector bytes
        self.draft_ids = []           # per draft selector bytes
        self.prob_rows = []           # per draft: (mode, values)

    def encode(self, V, rows=None):
        e = Enc()
        e.b += b"KX"
        e.u8(self.feat)
        if self.feat & F_SIZES:
            for v in self.sizes:
                e.u8(v)
        words = (V + 31) // 32
        if self.feat & F_MASK:
            e.u8(self.mask_stride)
            for mode, args in self.mask_rows:
                e.u8(mode)
                if mode in (3, 5):
                    e.u16(args)
                elif mode == 4:
                    e.u8(args[0] - 1)
                    e.u8(args[1])
                elif mode == 2:
                    for i in range(words):
                        e.u32(args[i % len(args)])
                elif mode == 6:
                    for i in range(words):
                        e.u8(args[i % len(args)])
        if self.feat & F_BIAS:
            e.u8(self.bias_base)
            counts = self.bias_counts or [len(r) for r in self.bias_rows]
            for cnt in counts:
                e.u8(cnt)
            for row in self.bias_rows:
                for sel, val in row:
                    if isinstance(sel, tuple):
                        e.u8(245)  # 245 % 6 == 5: raw
                        e.u32(sel[1])
                    else:
                        e.u8(sel)
                    e.value(val)
            if self.bias_corrupt:
                e.u8(self.bias_corrupt[0])
                e.u8(self.bias_corrupt[1])
            else:
                e.u8(0)
            e.u8(self.bias_ptr)
        if self.feat & F_DYN:
            e.u8(self.dt_arrays)
            enc_dt(e, self.dt_range)
            enc_dt(e, self.dt_exp)
            if self.dt_arrays & 1:
                for v in self.dt_range_rows:
                    enc_dt(e, v)
            if self.dt_arrays & 2:
                for v in self.dt_exp_rows:
                    enc_dt(e, v)
        if self.feat & F_OUTS:
            e.u8(self.mt)
            e.u8(self.N)
            e.u8(self.want2)
            e.u8(self.out_hostile)
        if self.feat & F_SCORE:
            e.u8(self.score_flags)
            if self.score_flags & 128:
                e.u8(self.score_size)
            e.u8(self.K)
            for t in self.targets:
                e.u8(t)
            e.u8(self.score_want)
            e.u8(self.score_N)
        if self.feat & F_VERIFY:
            e.u8(self.kd)
            e.u8(self.vflags)
            e.u8(self.vwant)
            if self.vwant & 8:
                e.u8(self.pstride)
            if self.vflags & 128:
                e.u8(self.dsize)
            Ka = self.kd % rows if self.kd < 248 else 0
            Bv = rows // (Ka + 1)
            if self.vflags & 1:
                for i in range(Bv):
                    e.u8(self.num_drafts[i % len(self.num_drafts)] if self.num_drafts else 0)
            ids = self.draft_ids or [0]
            for i in range(Bv * Ka):
                e.u8(ids[i % len(ids)])
            if self.vflags & 2:
                pr = self.prob_rows or [(0, None)]
                for i in range(Bv * Ka):
                    mode, vals = pr[i % len(pr)]
                    e.u8(mode)
                    if mode == 2:
                        for j in range(V):
                            e.value(vals[j % len(vals)])
                    elif mode == 3:
                        for j in range(V):
                            e.u8(vals[j % len(vals)])
        return bytes(e.b)


def ext_random(rng, c, feats):
    """A valid extension for call c (its rows, V), with the features asked."""
    x = Ext()
    x.feat = feats
    V, B = c.V, c.rows
    for _ in range(B):
        mode = rng.choice([0, 0, 2, 3, 4, 5, 6, 1])
        args = {0: None, 1: None, 2: [rng.getrandbits(32) for _ in range(4)],
                3: rng.randrange(V), 4: (rng.randrange(1, 9), rng.randrange(8)),
                5: rng.randrange(V), 6: [rng.randrange(256) for _ in range(3)]}[mode]
        if mode == 4:
            args = (args[0], args[1] % args[0])
        x.mask_rows.append((mode, args))
    x.mask_stride = rng.choice([0, 0, 128 + rng.randrange(96)])
    x.bias_base = rng.randrange(4)
    for _ in range(B):
        x.bias_rows.append([(rng.randrange(240), rng.choice([rng.uniform(-12, 12), "100", "-100",
                                                            "0", "-0", "1", "-max", "max", "1e30"]))
                            for _ in range(rng.randrange(5))])
    x.dt_arrays = rng.randrange(4)
    x.dt_range = rng.choice([("t", 0.0), ("t", rng.random()), "0", "-0", "1", "0.5", "den", "max"])
    x.dt_exp = rng.choice([("t", rng.random()), "1", "2", "0.5", "den", "max", "1e-30"])
    x.dt_range_rows = [rng.choice([("t", rng.random()), "0", "2"]) for _ in range(B)]
    x.dt_exp_rows = [rng.choice([("t", rng.random()), "1", "0.1"]) for _ in range(B)]
    x.mt = rng.randrange(40)
    x.N = rng.randrange(240)
    x.want2 = rng.randrange(256)
    x.K = rng.randrange(5)
    x.targets = [rng.randrange(240) for _ in range(B * x.K)]
    x.score_flags = rng.choice([0, 0, 1])
    x.score_want = rng.randrange(64)
    x.score_N = rng.randrange(240)
    return x


def ext_seeds(put):
    rng = random.Random(20261203)
    # valid calls, every feature alone and together
    for i in range(72):
        feats = [F_MASK, F_BIAS, F_DYN, F_OUTS, F_SCORE | F_OUTS,
                 F_MASK | F_BIAS | F_DYN | F_OUTS | F_SCORE][i % 6]
        c = clean_call(rng)
        if feats & F_SCORE:
            c.n = 1
        x = ext_random(rng, c, feats)
        put("seed-ext-ok-%02d" % i, c.encode() + x.encode(c.V, c.rows))
    for i in range(6):
        c = clean_call(rng, small=False)
        c.n = 1
        x = ext_random(rng, c, F_MASK | F_BIAS | F_DYN | F_OUTS | F_SCORE)
        put("seed-ext-ok-large-%d" % i, c.encode() + x.encode(c.V, c.rows))

    def base(feats, rows=2, V=40, n=1):
        c = Call(rng)
        c.max_vocab = 64
        c.rows = rows
        c.V = V
        c.n = n
        c.want = 31
        c.rows_data = [row_gauss(rng, V, 0) for _ in range(rows)]
        x = ext_random(rng, c, feats)
        x.mask_rows = [(0, None)] * rows
        x.mask_stride = 0
        x.dt_arrays = 0
        x.dt_range, x.dt_exp = ("t", 0.5), "1"
        x.mt, x.N, x.want2 = 8, 5, 255
        x.score_flags = 0
        x.score_want = 63
        x.score_N = 4
        return c, x

    def emit(name, c, x):
        put("seed-ext-" + name, c.encode() + x.encode(c.V, c.rows))

    # the mask: rows allowing nothing, one token, a pattern; strides
    for mode, args in ((1, None), (3, 7), (3, 39), (4, (3, 1)), (5, 0), (6, [0x11, 0x80])):
        c, x = base(F_MASK | F_OUTS)
        x.mask_rows = [(mode, args), (0, None)]
        emit("mask-mode%d-%s" % (mode, args if not isinstance(args, (list, tuple)) else
                                  "-".join(map(str, args))), c, x)
    for V in (1, 31, 32, 33, 64):
        c, x = base(F_MASK | F_OUTS, V=V)
        x.mask_rows = [(1, None), (3, V - 1)]
        x.mask_stride = 130
        emit("mask-none-V%d" % V, c, x)
    for sel, what in ((228, "small"), (229, "neg"), (230, "min"), (231, "max"),
                      (232, "over"), (227, "misaligned")):
        c, x = base(F_MASK, V=40)
        x.mask_stride = sel
        emit("bad-mask-stride-" + what, c, x)
    # the bias: bad ids, non-finite values, corrupt offsets, pointers
    for sel in range(240, 246):
        c, x = base(F_BIAS)
        x.bias_rows = [[(3, 1.5)], [(5, -2), (sel if sel != 245 else ("raw", 2**31 - 5), 1)]]
        emit("bad-bias-id-%d" % sel, c, x)
    for v in ("nan", "inf", "-inf", "snan"):
        c, x = base(F_BIAS)
        x.bias_rows = [[(3, v)], []]
        emit("bad-bias-value-" + v, c, x)
    for sel in (240, 241, 242, 243):
        for j in (0, 1):
            c, x = base(F_BIAS, rows=3)
            x.bias_rows = [[(1, 1)], [(2, 2), (3, 3)], [(4, 4)]]
            x.bias_corrupt = (sel, j)
            emit("bad-bias-offsets-%d-%d" % (sel, j), c, x)
    for flags, what in ((1, "null-ids"), (2, "null-values"), (4, "null-offsets"),
                        (8, "misaligned-offsets"), (16, "misaligned-ids"), (24, "misaligned-values")):
        c, x = base(F_BIAS)
        x.bias_ptr = flags
        emit("bad-bias-" + what, c, x)
    c, x = base(F_BIAS | F_MASK | F_OUTS)
    x.bias_rows = [[(7, "100"), (7, "-100"), (9, "max")], [(0, "-max")]]
    x.mask_rows = [(5, 9), (3, 0)]
    emit("bias-masked-token", c, x)
    # dynatemp: good and bad ranges and exponents, scalars and arrays
    for rng_v in ("-1", "nan", "inf", "-den", "-inf"):
        c, x = base(F_DYN)
        x.dt_range = rng_v
        emit("bad-dynatemp-range-all-" + rng_v, c, x)
        c, x = base(F_DYN)
        x.dt_arrays = 1
        x.dt_range_rows = [("t", 0.3), rng_v]
        emit("bad-dynatemp-range-row-" + rng_v, c, x)
    for ev in ("0", "-0", "-1", "nan", "inf"):
        c, x = base(F_DYN)
        x.dt_exp = ev
        emit("bad-dynatemp-exponent-all-" + ev, c, x)
        c, x = base(F_DYN)
        x.dt_arrays = 2
        x.dt_exp_rows = ["1", ev]
        emit("bad-dynatemp-exponent-row-" + ev, c, x)
    for arrays in (4, 8):
        c, x = base(F_DYN)
        x.dt_arrays = arrays | (arrays >> 2)
        x.dt_range_rows = [("t", 0.2)] * 2
        x.dt_exp_rows = ["1"] * 2
        emit("bad-dynatemp-misaligned-%d" % arrays, c, x)
    for T in ("0", "1", "0.5", "1e-30", "max"):
        for d in (("t", 0.0), "-0", ("t", 0.3), "1", "max", "den"):
            for ex in ("1", "0.5", "max", "1e-30"):
                if rng.random() > 0.35:
                    continue
                c, x = base(F_DYN | F_OUTS)
                c.scalars[P_TEMP] = T
                x.dt_range, x.dt_exp = d, ex
                emit("dynatemp-T%s-d%s-e%s" % (T, d if isinstance(d, str) else d[1], ex), c, x)
    # top-N: over the limit, negative, pointers with N = 0, past V, 1024
    for sel, what in ((240, "over"), (241, "neg"), (242, "min"), (243, "max"), (244, "zero"),
                      (245, "1025")):
        c, x = base(F_OUTS)
        x.N = sel
        emit("bad-top-n-" + what, c, x)
    for want2 in (1, 2, 4, 8, 0xF0):
        c, x = base(F_OUTS)
        x.N = 0
        x.want2 = want2
        emit("top-n-zero-want%d" % want2, c, x)
    for V in (1, 3, 20):
        c, x = base(F_OUTS | F_SCORE, V=V)
        x.mt = 30
        x.N = 30
        x.score_N = 29
        c.scalars[P_TOPK] = 2
        emit("top-n-past-V%d" % V, c, x)
    c, x = base(F_OUTS | F_SCORE)
    x.mt = 250
    x.N = 239
    emit("top-n-limit-1024", c, x)
    for h in range(240, 248):
        c, x = base(F_OUTS)
        x.out_hostile = h
        emit("bad-outputs-misaligned-%d" % (h % 8), c, x)
    for h in range(224, 232):
        c, x = base(F_OUTS)
        x.out_hostile = h
        emit("bad-outputs-overlap-%d" % (h % 8), c, x)
    for T in ("0", "1", "0.7"):
        for k in (0, 1, 3):
            c, x = base(F_OUTS | F_MASK, n=2)
            c.max_samples = 2
            c.scalars[P_TEMP] = T
            c.scalars[P_TOPK] = k
            x.mask_rows = [(4, (2, 0)), (0, None)]
            emit("outputs-T%s-k%d" % (T, k), c, x)
    # kiln_score: bad targets, NULL targets, bad K, params NULL, sizes, n
    for t in range(240, 245):
        c, x = base(F_SCORE | F_OUTS)
        x.K = 3
        x.targets = [1, 2, 230, 4, t, 6]
        emit("bad-score-target-%d" % t, c, x)
    for flags, what in ((2, "null-targets"), (4, "k-neg"), (8, "k-min"), (12, "k-huge-null"),
                        (1, "params-null"), (16, "misaligned-targets"), (32, "misaligned-logprobs"),
                        (48, "misaligned-ranks"), (64, "misaligned-top-ids"),
                        (80, "misaligned-top-logprobs"), (96, "misaligned-entropy")):
        c, x = base(F_SCORE | F_OUTS)
        x.K = 2
        x.targets = [1, 230, 3, 0]
        x.score_flags = flags
        emit("bad-score-" + what if flags != 1 else "score-" + what, c, x)
    c, x = base(F_SCORE)
    x.K = 0
    x.score_flags = 2
    emit("score-null-targets-k0", c, x)
    for sel, what in ((0, "prefix0"), (3, "prefix3"), (6, "prefix6"), (248, "zero"),
                      (252, "plus8"), (254, "minus4")):
        c, x = base(F_SCORE | F_OUTS)
        x.K = 1
        x.targets = [5, 6]
        x.score_flags = 128
        x.score_size = sel
        emit("score-size-" + what, c, x)
    c, x = base(F_SCORE, n=2)
    c.max_samples = 2
    x.K = 1
    x.targets = [5, 6]
    emit("bad-score-n2", c, x)
    c, x = base(F_SCORE | F_OUTS | F_MASK | F_BIAS)
    c.max_history = 4
    c.hist = 1 | 2
    c.lens = [3, 2]
    c.ids = [[1, 2, 2], [5, 6]]
    c.prompts = [1, 0]
    c.scalars[P_REP] = "2"
    c.scalars[P_PRES] = "0.5"
    c.scalars[P_FREQ] = ("t", 0.7)
    x.K = 4
    x.targets = [1, 2, 230, 9, 5, 6, 0, 39]
    x.mask_rows = [(5, 2), (1, None)]
    emit("score-penalties-mask-bias", c, x)
    # kiln_verify_drafts: one-hot and probability drafts, K_b, K = 0 against
    # kiln_sample, and every bad input of section 19
    def vbase(rows=4, V=24, kd=1, probs=False):
        c, x = base(F_VERIFY | F_MASK | F_BIAS | F_DYN, rows=rows, V=V)
        c.max_batch = 8
        x.feat &= ~F_DYN
        x.kd = kd
        x.vflags = 2 if probs else 0
        x.vwant = 7
        x.draft_ids = [rng.randrange(240) for _ in range(rows * 2)]
        x.prob_rows = [(0, None), (1, None), (3, [rng.randrange(256) for _ in range(7)])]
        x.mask_rows = [(0, None)] * rows
        return c, x

    for i in range(30):
        rows = rng.randrange(1, 9)
        c, x = vbase(rows=rows, V=rng.choice([1, 2, 7, 24, 40]), kd=rng.randrange(rows),
                     probs=rng.random() < 0.6)
        c.scalars[P_TEMP] = rng.choice(["0", "1", "0.7", ("t", rng.random()), "2"])
        c.scalars[P_TOPK] = rng.choice([0, 0, 1, 3, 10])
        c.scalars[P_TOPP] = rng.choice(["1", "0.9", "0.5"])
        if rng.random() < 0.5:
            x.vflags |= 1
            x.num_drafts = [rng.randrange(240) for _ in range(rows)]
        if rng.random() < 0.3:
            x.vwant = 8 | rng.randrange(8)
            x.pstride = rng.choice([0, 130, 131])
        x.mask_rows = [rng.choice([(0, None), (5, rng.randrange(c.V)), (4, (2, 1))])
                       for _ in range(rows)]
        emit("verify-ok-%02d" % i, c, x)
    for T in ("0", "1", "0.5"):
        c, x = vbase(rows=3, kd=0)
        c.scalars[P_TEMP] = T
        emit("verify-k0-T" + T, c, x)
    for kd, what in ((248, "neg"), (249, "min"), (250, "max"), (251, "over-batch")):
        c, x = vbase(kd=kd)
        emit("bad-verify-k-" + what, c, x)
    for sv in (240, 241, 242, 243):
        c, x = vbase()
        x.vflags |= 1
        x.num_drafts = [1, sv]
        emit("bad-verify-num-drafts-%d" % sv, c, x)
    for sv in (240, 241, 242, 243, 244):
        c, x = vbase()
        x.draft_ids = [3, sv]
        emit("bad-verify-draft-id-%d" % sv, c, x)
    for vals, what in ((["0"], "zero"), (["nan"], "nan"), (["2"], "over"), (["-den"], "neg"),
                       (["0.5", "nan", "0.1"], "nan-elsewhere"), (["0.1", "2"], "over-elsewhere")):
        c, x = vbase(probs=True)
        x.prob_rows = [(2, vals)]
        c.scalars[P_TEMP] = "1"
        emit("bad-verify-probs-" + what, c, x)
    for ps, what in ((224, "small"), (225, "neg"), (226, "max")):
        c, x = vbase(probs=True)
        x.vwant = 15
        x.pstride = ps
        emit("bad-verify-probs-stride-" + what, c, x)
    for fl, what in ((4, "null-ids"), (8, "null-tokens"), (16, "misaligned-ids"),
                     (32 | 1, "misaligned-num-drafts"), (48 | 2, "misaligned-probs"),
                     (64, "misaligned-tokens"), (80, "misaligned-accepted"),
                     (96, "misaligned-logprobs")):
        c, x = vbase()
        x.vflags |= fl
        x.num_drafts = [1]
        emit("bad-verify-" + what, c, x)
    for ds, what in ((0, "prefix0"), (3, "prefix3"), (248, "zero"), (252, "plus8")):
        c, x = vbase()
        x.vflags |= 128
        x.dsize = ds
        emit("verify-drafts-size-" + what, c, x)
    c, x = vbase()
    c.n = 2
    c.max_samples = 2
    emit("bad-verify-n2", c, x)

    # struct size prefixes: the old sizes with the new fields set
    for i in range(12):
        c, x = base(F_SIZES | F_MASK | F_BIAS | F_DYN | F_OUTS)
        x.sizes = (1 + rng.randrange(15), 1 + rng.randrange(23), 1 + rng.randrange(17))
        emit("sizes-%02d" % i, c, x)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        if f.startswith("seed-"):
            os.remove(os.path.join(out, f))
    seeds = {}

    def put(name, data):
        assert name not in seeds, name
        seeds[name] = data

    rng = random.Random(20240611)

    # valid calls, small and (a few) larger vocabularies
    for i in range(180):
        put("seed-ok-%03d" % i, clean_call(rng).encode())
    for i in range(20):
        put("seed-ok-large-%02d" % i, clean_call(rng, small=False).encode())

    # hand-made valid corner cases
    for dt in range(3):
        for name, row in (("equal", row_mode(0, 8, "1")), ("equal-neg", row_mode(0, 8, "-inf")),
                          ("nan", row_mode(1, 8, ["1", "nan"])),
                          ("inf", row_mode(1, 8, ["inf", "1"])),
                          ("masked", row_mode(1, 8, ["-inf", "-inf", "3"])),
                          ("denormal", row_mode(1, 8, ["den", "-den", "denmax", "0", "-0"])),
                          ("huge", row_mode(1, 8, ["max", "-max", "max", "1"])),
                          ("zeros", row_mode(1, 8, ["0", "-0"]))):
            for temp in ("0", "1", "1e-30", "max"):
                c = Call(rng)
                c.V = 8
                c.dtype = dt
                c.rows_data = [row, row_gauss(rng, 8, dt)]
                c.scalars[P_TEMP] = temp
                c.scalars[P_TOPK] = 3
                c.scalars[P_TOPP] = "0.9"
                put("seed-ok-row-%s-dt%d-T%s" % (name, dt, temp), c.encode())

    # V >= 16384: the CPU select path estimates its top-k threshold from
    # every 16th key. Rows whose sampled keys sit above all the others
    # (x_i = -(i % 16)) mislead it for k above V / 16, and it must fall back
    # to the exact histogram; flat and peaked large rows for the common path.
    for i, (V, k, step, mod, a) in enumerate(((16384, 2000, 1, 16, -1), (16384, 1500, 1, 16, -1),
                                               (20479, 1300, 1, 16, -0.5), (17000, 40, 1, 16, -1),
                                               (16384, 5000, 3, 7, 1), (18000, 16383, 1, 2, 1))):
        c = Call(rng)
        c.max_batch = 2
        c.max_vocab = 20480
        c.rows = 1 + i % 2
        c.V = V
        c.n = 1
        c.max_samples = 1
        c.want = 31
        c.algorithm = i % 3
        c.alt = i
        c.scalars[P_TOPK] = k
        c.scalars[P_TEMP] = ("t", 0.33)

        def ramp(e, step=step, mod=mod, a=a):
            e.u8(step)
            e.u8(mod - 1)
            e.value(a)
        c.rows_data = [(3, ramp)] * c.rows
        put("seed-ok-bigvocab-%d" % i, c.encode())

    # one bad scalar or array entry per parameter value class
    for p, bads in BAD_PARAM.items():
        for j, v in enumerate(bads):
            c = clean_call(rng)
            c.scalars[p] = v
            c.arrays &= ~(1 << p)
            put("seed-bad-%s-all-%d" % (NAMES[p], j), c.encode())
            c = clean_call(rng)
            c.arrays |= 1 << p
            c.per_row[p] = [sane_param(rng, p, c.V) for _ in range(c.rows)]
            c.per_row[p][rng.randrange(c.rows)] = v
            c.scalars[p] = v if j % 2 else c.scalars[p]  # a bad shadowed scalar is fine
            put("seed-bad-%s-row-%d" % (NAMES[p], j), c.encode())
            c = clean_call(rng)  # a bad scalar hidden behind a valid array
            c.arrays |= 1 << p
            c.per_row[p] = [sane_param(rng, p, c.V) for _ in range(c.rows)]
            c.scalars[p] = v
            put("seed-ok-shadowed-%s-%d" % (NAMES[p], j), c.encode())

    # shapes
    for what in ("num_rows", "vocab", "num_samples"):
        for sel in range(248, 256):
            c = clean_call(rng)
            setattr(c, what, (sel, rng.getrandbits(64 if what != "num_samples" else 32)))
            put("seed-bad-%s-%d" % (what, sel), c.encode())
    for which in ("stride", "pstride"):
        for k in range(8):
            c = clean_call(rng)
            c.rows = max(c.rows, 2) if c.max_batch >= 2 else 1
            setattr(c, which, 224 + k)
            setattr(c, which + "_raw", rng.choice([2**62, 2**40, 12345, -5 & (2**64 - 1)]))
            c.rows_data = [row_gauss(rng, c.V, c.dtype) for _ in range(c.rows)]
            for p in list(c.per_row):
                c.per_row[p] = (c.per_row[p] * 8)[:c.rows]
            c.lens, c.ids, c.prompts, c.hist = [], [], [], 0
            put("seed-bad-%s-%d" % (which, k), c.encode())
    for sel in range(250, 256):
        c = clean_call(rng)
        c.dtype = ("bad", sel, rng.getrandbits(32))
        put("seed-bad-dtype-%d" % sel, c.encode())
    for k, arg in enumerate(range(10)):
        for which in range(3):
            c = clean_call(rng)
            c.sizes[which] = 248 + k % 8
            c.size_args[which] = rng.getrandbits(8) if c.sizes[which] <= 251 else rng.getrandbits(64)
            put("seed-size-%d-%d" % (which, k), c.encode())

    # workspace
    for sel, name in ((232, "small"), (248, "zero"), (240, "bigger"), (224, "unaligned")):
        c = clean_call(rng)
        c.ws = sel
        c.ws_arg = rng.randrange(1, 256)
        put("seed-ws-%s" % name, c.encode())

    # histories: valid, with bad ids, prompt lengths, corrupt offsets
    for i in range(6):
        c = clean_call(rng)
        c.max_history = rng.choice([1, 3, 11])
        c.hist = 3 | (rng.randrange(4) << 2)
        c.lens = [rng.randrange(c.max_history + 1) for _ in range(c.rows)]
        c.ids = [[rng.randrange(240) for _ in range(ln)] for ln in c.lens]
        c.prompts = [rng.randrange(240) for _ in range(c.rows)]
        c.scalars[P_REP] = rng.choice(["2", "0.5", "1e30", "den", "max"])
        c.scalars[P_PRES] = rng.choice(["1", "-1", "max", "-max", "100"])
        c.scalars[P_FREQ] = rng.choice(["1", "-1", "max", "-max", "1e30"])
        c.arrays &= ~((1 << P_REP) | (1 << P_PRES) | (1 << P_FREQ))
        base = c.encode()
        put("seed-ok-history-%02d" % i, base)
        if any(c.lens):
            r = next(k for k, ln in enumerate(c.lens) if ln)
            for bad in (240, 241, 242, 243, 244, ("raw", 2**31 + 5)):
                c2 = Call.__new__(Call)
                c2.__dict__ = dict(c.__dict__)
                c2.ids = [list(x) for x in c.ids]
                c2.ids[r][0] = bad
                put("seed-bad-history-id-%02d-%s" % (i, bad if isinstance(bad, int) else "raw"),
                    c2.encode())
            for bad in (240, 241, 242, 243):
                c2 = Call.__new__(Call)
                c2.__dict__ = dict(c.__dict__)
                c2.prompts = list(c.prompts)
                c2.prompts[r] = bad
                put("seed-bad-prompt-%02d-%d" % (i, bad), c2.encode())
        for corrupt in range(240, 246):
            c2 = Call.__new__(Call)
            c2.__dict__ = dict(c.__dict__)
            c2.corrupt = (corrupt, rng.randrange(256))
            put("seed-bad-offsets-%02d-%d" % (i, corrupt), c2.encode())
        c2 = Call.__new__(Call)
        c2.__dict__ = dict(c.__dict__)
        c2.lens = list(c.lens)
        c2.lens[0] = 250
        c2.ids = [list(x) for x in c.ids]
        c2.ids[0] = [rng.randrange(240) for _ in range(min(c.max_history, 12) + 1 + 250 % 3)]
        put("seed-bad-history-long-%02d" % i, c2.encode())
    for i in range(4):  # history for a sampler without histories
        c = clean_call(rng)
        c.max_history = 0
        c.arrays |= 1 << 12
        c.hist = 1
        c.lens = [250 if r == 0 else 0 for r in range(c.rows)]
        c.ids = [[1] if r == 0 else [] for r in range(c.rows)]
        put("seed-bad-history-max0-%d" % i, c.encode())

    # pointer mistakes, each alone and a few combined; every misaligned
    # buffer and every output aimed into each kind of other buffer
    for kind in range(NMOD):
        if kind in (MOD_MISALIGN, MOD_OVERLAP):
            continue
        for i in range(3):
            c = clean_call(rng)
            c.mods = [(kind, rng.randrange(256), rng.randrange(256), rng.randrange(256))]
            put("seed-ptr-%02d-%d" % (kind, i), c.encode())
    for target in range(18):
        c = clean_call(rng)
        c.arrays = 0x1FF  # every parameter an array, so every buffer exists
        for p in range(9):
            c.per_row[p] = [sane_param(rng, p, c.V) for _ in range(c.rows)]
        if c.max_history == 0:
            c.max_history = 4
        c.hist = 3
        c.lens = [rng.randrange(1, 5) for _ in range(c.rows)]
        c.ids = [[rng.randrange(240) for _ in range(ln)] for ln in c.lens]
        c.prompts = [rng.randrange(240) for _ in range(c.rows)]
        c.want = 31
        c.mods = [(MOD_MISALIGN, target, rng.randrange(7), 0)]
        put("seed-ptr-misalign-%02d" % target, c.encode())
    for which_out in range(6):
        for t in range(4):
            c = clean_call(rng)
            c.want = 31
            c.mods = [(MOD_OVERLAP, which_out, rng.randrange(256), 4 * rng.randrange(64))]
            put("seed-ptr-overlap-%d-%d" % (which_out, t), c.encode())
    for i in range(10):
        c = clean_call(rng)
        c.mods = [(rng.randrange(NMOD), rng.randrange(256), rng.randrange(256),
                   rng.randrange(256)) for _ in range(rng.randrange(2, 4))]
        put("seed-ptr-multi-%d" % i, c.encode())

    # best of n: op 15, groups, n, hostile selector, scores
    for i in range(30):
        e = Enc()
        e.u8(15)
        g = rng.randrange(9) if i < 24 else 248 + i % 6
        nsel = rng.randrange(8) if i % 5 else 248 + i % 5
        h = 0 if i < 12 else 224 + i % 6
        e.u8(g)
        e.u8(nsel)
        e.u8(h)
        if g == 255 or g in (252, 253, 254):
            e.u64(rng.getrandbits(64))
        if nsel >= 252:
            e.u32(rng.getrandbits(32))
        if h in (226, 227):
            e.u8(rng.randrange(3))
        for _ in range(64):
            if rng.random() < 0.3:
                e.u8(0)  # NaN
            else:
                e.u8(64)
                e.value(rng.choice(["0", "-0", "1", "-inf", "inf", "max", 2.5, -3, "nan"]))
        if h == 228:
            e.u8(rng.randrange(256))
        put("seed-bon-%02d" % i, bytes(e.b))

    # raw configurations (op 14): valid limits, then one bad field each
    good = {"batch": 4, "vocab": 40, "samples": 2, "history": 6}
    bad = [("batch", 0), ("batch", -1), ("batch", 2**31 + 1), ("batch", 2**62),
           ("vocab", 0), ("vocab", 2**24), ("vocab", -1), ("vocab", 2**63 - 1),
           ("samples", 0), ("samples", -1), ("samples", 2**24 + 1),
           ("history", -1), ("history", 2**31 + 1),
           ("threads", -1), ("threads", 4097), ("algorithm", 3), ("algorithm", -1),
           ("backend", 2), ("backend", -1), ("backend", 1), ("size", 0), ("size", 12),
           ("size", 1000)]
    cases = [("ok", None)] * 12 + bad
    for i, (field, v) in enumerate(cases):
        f = dict(good)
        f.update({"threads": rng.randrange(4), "algorithm": rng.randrange(3),
                  "backend": 0})
        if i < 12:  # odd but valid limits
            f["batch"] = rng.choice([1, 2, 8, 2**31])
            f["vocab"] = rng.choice([1, 2, 40, 100, 2**20])
            f["samples"] = rng.choice([1, 4, 2**24])
            f["history"] = rng.choice([0, 1, 12, 2**31])
        elif field != "size":
            f[field] = v
        e = Enc()
        e.u8(14)
        if field == "size":
            e.u8(255)
            e.u64(v)
        else:
            e.u8(0)
        sel = 1 | 4 | 8
        e.u8(sel)
        e.u32(f["backend"])
        e.u64(f["batch"])
        e.u64(f["vocab"])
        e.u32(f["samples"])
        e.u64(f["history"])
        e.u32(f["threads"])
        e.u32(f["algorithm"])
        # then a sample case with those limits: rows, V, n, alt, ... the rest
        # of a clean call's bytes (decoded against these limits)
        e.b += clean_call(rng).encode()[5:]
        put("seed-cfg-%02d-%s" % (i, field), bytes(e.b))

    # the extension's seeds, from their own random stream (the ones above
    # stay byte for byte what they were)
    ext_seeds(put)

    for name, data in sorted(seeds.items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%d seeds in %s" % (len(seeds), out))


if __name__ == "__main__":
    main()
