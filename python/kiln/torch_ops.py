"""kiln as PyTorch operators: ``import kiln.torch_ops`` registers them.

    torch.ops.kiln.sample(logits, temperature, top_k, top_p, min_p,
                          repetition_penalty, presence_penalty, frequency_penalty,
                          seed, offset, num_samples, history_offsets, history_ids,
                          prompt_lengths, return_probs, allowed_mask, dynatemp_range,
                          dynatemp_exponent, top_logprobs, return_entropy)
        -> (tokens [B, n] int32, logprobs [B, n] f32, raw_logprobs [B, n] f32,
            probs [B, V] f32, kept_counts [B] int32, valid [B] uint8,
            raw_top_ids [B, N] int32, raw_top_logprobs [B, N] f32,
            final_top_ids [B, N] int32, final_top_logprobs [B, N] f32,
            raw_ranks [B, n] int32, entropy [B] f32, raw_entropy [B] f32,
            temperatures [B] f32)
        an output not asked for (probs without return_probs, the top-N and
        ranks with top_logprobs = 0, the entropies without return_entropy)
        is an empty [0] tensor
    torch.ops.kiln.top_k_top_p_sampling_from_logits(logits, top_k, top_p,
                                                    temperature, seed, offset)
        -> tokens [B] int32 (FlashInfer's shape)
    torch.ops.kiln.score(logits, targets [B, K] int32, repetition_penalty,
                         presence_penalty, frequency_penalty, history_offsets,
                         history_ids, prompt_lengths, allowed_mask, top_logprobs)
        -> (logprobs [B, K], ranks [B, K] int32, top_ids [B, N] int32,
            top_logprobs [B, N], entropy [B], valid [B] uint8)
    torch.ops.kiln.verify_drafts(target_logits [B, K + 1, V], draft_ids [B, K]
                                 int32, num_drafts [B] int32 or None,
                                 draft_probs [B, K, V] f32 or None, temperature,
                                 top_k, top_p, min_p, repetition_penalty,
                                 presence_penalty, frequency_penalty, seed, offset,
                                 history_offsets, history_ids, prompt_lengths)
        -> (tokens [B, K + 1] int32, num_accepted [B] int32,
            logprobs [B, K + 1] f32, valid [B] uint8)

Every parameter is a tensor of B values on the logits' device, of its C type
(float32; top_k int32; seed and offset int64, read as the same 64 bits);
history_offsets [B + 1] int64, history_ids int32 and prompt_lengths [B]
int32, or None. logits is [B, V], float32, float16 or bfloat16, rows
contiguous. The ops are functional (they allocate their outputs), have fake
implementations, so ``torch.compile(fullgraph=True)`` traces through them,
and run on the logits' device and the current CUDA stream with no host
synchronisation. The functions of the same names here are keyword wrappers
that broadcast Python scalars to those tensors and return kiln's result
tuples. The logit bias has no op argument: add it to the logits first
(``logits.index_add_``), which is what kiln does, in f32.

CUDA graphs: kiln's sampler and workspace are cached per thread, device,
stream and limits (rows, vocabulary, draws, history) and allocated at the
first call that needs them; a captured region must not allocate, so call
the op once eagerly with the largest shapes on the capture stream before
capturing (``warm_up``), then write new seeds and offsets into the captured
tensors between replays.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor

from . import _sampling

__all__ = ["sample", "top_k_top_p_sampling_from_logits", "score", "verify_drafts", "warm_up"]

_U63 = 1 << 63


@torch.library.custom_op("kiln::sample", mutates_args=())
def _sample(logits: Tensor, temperature: Tensor, top_k: Tensor, top_p: Tensor, min_p: Tensor,
            repetition_penalty: Tensor, presence_penalty: Tensor, frequency_penalty: Tensor,
            seed: Tensor, offset: Tensor, num_samples: int, history_offsets: Optional[Tensor],
            history_ids: Optional[Tensor], prompt_lengths: Optional[Tensor], return_probs: bool,
            allowed_mask: Optional[Tensor] = None, dynatemp_range: Optional[Tensor] = None,
            dynatemp_exponent: Optional[Tensor] = None, top_logprobs: int = 0,
            return_entropy: bool = False) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                           Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                           Tensor]:
    _check_logits(logits)
    r = _sampling.sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                         repetition_penalty=repetition_penalty, presence_penalty=presence_penalty,
                         frequency_penalty=frequency_penalty, seed=seed, offset=offset,
                         num_samples=num_samples, history_offsets=history_offsets,
                         history_ids=history_ids, prompt_lengths=prompt_lengths,
                         allowed_mask=allowed_mask, dynatemp_range=dynatemp_range,
                         dynatemp_exponent=dynatemp_exponent, top_logprobs=top_logprobs,
                         return_entropy=return_entropy, return_temperatures=True,
                         return_logprobs=True, return_raw_logprobs=True,
                         return_probs=return_probs)

    def given(t, dtype=torch.float32):
        return t if t is not None else logits.new_empty((0,), dtype=dtype)

    return (r.tokens, r.logprobs, r.raw_logprobs, given(r.probs), r.kept_counts, r.valid,
            given(r.raw_top_ids, torch.int32), given(r.raw_top_logprobs),
            given(r.final_top_ids, torch.int32), given(r.final_top_logprobs),
            given(r.raw_ranks, torch.int32), given(r.entropy), given(r.raw_entropy),
            r.temperatures)


@_sample.register_fake
def _sample_fake(logits, temperature, top_k, top_p, min_p, repetition_penalty, presence_penalty,
                 frequency_penalty, seed, offset, num_samples, history_offsets, history_ids,
                 prompt_lengths, return_probs, allowed_mask=None, dynatemp_range=None,
                 dynatemp_exponent=None, top_logprobs=0, return_entropy=False):
    _check_logits(logits)
    B, V = logits.shape
    i32, f32 = torch.int32, torch.float32

    def empty(shape, dtype=f32):
        return logits.new_empty(shape, dtype=dtype)

    draws, top = (B, num_samples), (B, top_logprobs)
    ranks = draws if top_logprobs > 0 else (0,)
    ent = (B,) if return_entropy else (0,)
    return (empty(draws, i32), empty(draws), empty(draws), empty((B, V) if return_probs else (0,)),
            empty((B,), i32), empty((B,), torch.uint8),
            empty(top if top_logprobs > 0 else (0,), i32), empty(top if top_logprobs > 0 else (0,)),
            empty(top if top_logprobs > 0 else (0,), i32), empty(top if top_logprobs > 0 else (0,)),
            empty(ranks, i32), empty(ent), empty(ent), empty((B,)))


@torch.library.custom_op("kiln::top_k_top_p_sampling_from_logits", mutates_args=())
def _top_k_top_p(logits: Tensor, top_k: Tensor, top_p: Tensor, temperature: Tensor, seed: Tensor,
                 offset: Tensor) -> Tensor:
    _check_logits(logits)
    r = _sampling.sample(logits, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                         offset=offset)
    return r.tokens


@_top_k_top_p.register_fake
def _top_k_top_p_fake(logits, top_k, top_p, temperature, seed, offset):
    _check_logits(logits)
    return logits.new_empty((logits.shape[0],), dtype=torch.int32)


@torch.library.custom_op("kiln::score", mutates_args=())
def _score(logits: Tensor, targets: Tensor, repetition_penalty: Tensor, presence_penalty: Tensor,
           frequency_penalty: Tensor, history_offsets: Optional[Tensor],
           history_ids: Optional[Tensor], prompt_lengths: Optional[Tensor],
           allowed_mask: Optional[Tensor],
           top_logprobs: int) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    _check_logits(logits)
    r = _sampling.score(logits, targets, repetition_penalty=repetition_penalty,
                        presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                        history_offsets=history_offsets, history_ids=history_ids,
                        prompt_lengths=prompt_lengths, allowed_mask=allowed_mask,
                        top_logprobs=top_logprobs)
    none_i = logits.new_empty((0,), dtype=torch.int32)
    none_f = logits.new_empty((0,), dtype=torch.float32)
    return (r.logprobs, r.ranks, none_i if r.top_ids is None else r.top_ids,
            none_f if r.top_logprobs is None else r.top_logprobs, r.entropy, r.valid)


@_score.register_fake
def _score_fake(logits, targets, repetition_penalty, presence_penalty, frequency_penalty,
                history_offsets, history_ids, prompt_lengths, allowed_mask, top_logprobs):
    _check_logits(logits)
    B, K = logits.shape[0], targets.shape[1]
    top = (B, top_logprobs) if top_logprobs > 0 else (0,)
    return (logits.new_empty((B, K), dtype=torch.float32),
            logits.new_empty((B, K), dtype=torch.int32), logits.new_empty(top, dtype=torch.int32),
            logits.new_empty(top, dtype=torch.float32), logits.new_empty((B,), dtype=torch.float32),
            logits.new_empty((B,), dtype=torch.uint8))


@torch.library.custom_op("kiln::verify_drafts", mutates_args=())
def _verify(target_logits: Tensor, draft_ids: Tensor, num_drafts: Optional[Tensor],
            draft_probs: Optional[Tensor], temperature: Tensor, top_k: Tensor, top_p: Tensor,
            min_p: Tensor, repetition_penalty: Tensor, presence_penalty: Tensor,
            frequency_penalty: Tensor, seed: Tensor, offset: Tensor,
            history_offsets: Optional[Tensor], history_ids: Optional[Tensor],
            prompt_lengths: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    if target_logits.dim() != 3:
        raise ValueError("kiln: verify_drafts takes target_logits [B, K + 1, V], got shape "
                         f"{tuple(target_logits.shape)}")
    r = _sampling.verify_drafts(target_logits, draft_ids, num_drafts, draft_probs,
                                temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                repetition_penalty=repetition_penalty,
                                presence_penalty=presence_penalty,
                                frequency_penalty=frequency_penalty, seed=seed, offset=offset,
                                history_offsets=history_offsets, history_ids=history_ids,
                                prompt_lengths=prompt_lengths)
    return r.tokens, r.num_accepted, r.logprobs, r.valid


@_verify.register_fake
def _verify_fake(target_logits, draft_ids, num_drafts, draft_probs, temperature, top_k, top_p,
                 min_p, repetition_penalty, presence_penalty, frequency_penalty, seed, offset,
                 history_offsets, history_ids, prompt_lengths):
    if target_logits.dim() != 3:
        raise ValueError("kiln: verify_drafts takes target_logits [B, K + 1, V]")
    B, P = target_logits.shape[0], target_logits.shape[1]
    return (target_logits.new_empty((B, P), dtype=torch.int32),
            target_logits.new_empty((B,), dtype=torch.int32),
            target_logits.new_empty((B, P), dtype=torch.float32),
            target_logits.new_empty((B,), dtype=torch.uint8))


def _check_logits(logits):
    if logits.dim() != 2:
        raise ValueError(f"kiln: the ops take logits [B, V], got shape {tuple(logits.shape)}")


# ------------------------------------------------------------ wrappers
def _rows(value, B, dtype, device, name):
    """A per-row tensor of `dtype` on `device`: a scalar broadcast, a tensor
    converted (a no-op when it already is one)."""
    if isinstance(value, Tensor):
        if value.dim() == 0:
            value = value.reshape(1).expand(B)
        if value.shape != (B,):
            raise ValueError(f"kiln: {name} has shape {tuple(value.shape)}, expected ({B},)")
        return value.to(device=device, dtype=dtype).contiguous()
    if dtype == torch.int64:
        value = _as_i64_bits(value, name)
    elif dtype == torch.int32:
        value = max(min(int(value), 2**31 - 1), -2**31)  # past int32, top-k is off either way
    return torch.full((B,), value, dtype=dtype, device=device)


def _as_i64_bits(value, name):
    """A seed or offset in [-2^63, 2^64) as the int64 with the same 64 bits."""
    v = int(value)
    if not -_U63 <= v < 2 * _U63:
        raise ValueError(f"kiln: {name} = {v} is outside [-2^63, 2^64)")
    return v - 2 * _U63 if v >= _U63 else v


def sample(logits, *, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
           presence_penalty=0.0, frequency_penalty=0.0, seed=0, offset=0, num_samples=1,
           history_offsets=None, history_ids=None, prompt_lengths=None, return_probs=False,
           allowed_mask=None, dynatemp_range=None, dynatemp_exponent=None, top_logprobs=0,
           return_entropy=False):
    """torch.ops.kiln.sample with keywords; scalars apply to every row.
    allowed_mask: int32 words [B, ceil(V / 32)] (xgrammar's layout) on the
    logits' device. Returns kiln.SampleResult with every field (None for the
    outputs not asked for; temperatures always)."""
    B, dev = logits.shape[0], logits.device
    f32, i32, i64 = torch.float32, torch.int32, torch.int64
    dyn = dynatemp_range is not None
    out = torch.ops.kiln.sample(
        logits, _rows(temperature, B, f32, dev, "temperature"), _rows(top_k, B, i32, dev, "top_k"),
        _rows(top_p, B, f32, dev, "top_p"), _rows(min_p, B, f32, dev, "min_p"),
        _rows(repetition_penalty, B, f32, dev, "repetition_penalty"),
        _rows(presence_penalty, B, f32, dev, "presence_penalty"),
        _rows(frequency_penalty, B, f32, dev, "frequency_penalty"),
        _rows(seed, B, i64, dev, "seed"), _rows(offset, B, i64, dev, "offset"), int(num_samples),
        history_offsets, history_ids, prompt_lengths, bool(return_probs), allowed_mask,
        _rows(dynatemp_range, B, f32, dev, "dynatemp_range") if dyn else None,
        _rows(1.0 if dynatemp_exponent is None else dynatemp_exponent, B, f32, dev,
              "dynatemp_exponent") if dyn else None,
        int(top_logprobs), bool(return_entropy))
    top = top_logprobs > 0
    return _sampling.SampleResult(
        out[0], out[1], out[2], out[3] if return_probs else None, out[4], out[5],
        *(o if top else None for o in out[6:11]),
        *(o if return_entropy else None for o in out[11:13]), out[13])


def top_k_top_p_sampling_from_logits(logits, top_k, top_p, *, temperature=1.0, seed=0, offset=0):
    """torch.ops.kiln.top_k_top_p_sampling_from_logits with keywords and
    scalars broadcast: tokens [B] int32."""
    B, dev = logits.shape[0], logits.device
    return torch.ops.kiln.top_k_top_p_sampling_from_logits(
        logits, _rows(top_k, B, torch.int32, dev, "top_k"),
        _rows(top_p, B, torch.float32, dev, "top_p"),
        _rows(temperature, B, torch.float32, dev, "temperature"),
        _rows(seed, B, torch.int64, dev, "seed"), _rows(offset, B, torch.int64, dev, "offset"))


def score(logits, targets, *, repetition_penalty=1.0, presence_penalty=0.0,
          frequency_penalty=0.0, history_offsets=None, history_ids=None, prompt_lengths=None,
          allowed_mask=None, top_logprobs=0):
    """torch.ops.kiln.score with keywords: targets [B, K] int32 (-1 padding).
    Returns kiln.ScoreResult (top_ids / top_logprobs None unless asked for)."""
    B, dev, f32 = logits.shape[0], logits.device, torch.float32
    out = torch.ops.kiln.score(
        logits, targets.to(device=dev, dtype=torch.int32).contiguous(),
        _rows(repetition_penalty, B, f32, dev, "repetition_penalty"),
        _rows(presence_penalty, B, f32, dev, "presence_penalty"),
        _rows(frequency_penalty, B, f32, dev, "frequency_penalty"), history_offsets, history_ids,
        prompt_lengths, allowed_mask, int(top_logprobs))
    top = top_logprobs > 0
    return _sampling.ScoreResult(out[0], out[1], out[2] if top else None, out[3] if top else None,
                                 out[4], out[5])


def verify_drafts(target_logits, draft_ids, num_drafts=None, draft_probs=None, *,
                  temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                  presence_penalty=0.0, frequency_penalty=0.0, seed=0, offset=0,
                  history_offsets=None, history_ids=None, prompt_lengths=None):
    """torch.ops.kiln.verify_drafts with keywords: target_logits [B, K + 1, V],
    draft_ids [B, K] int32, num_drafts [B] int32 or None, draft_probs
    [B, K, V] float32 or None. Returns kiln.VerifyResult."""
    B, dev = target_logits.shape[0], target_logits.device
    f32, i32, i64 = torch.float32, torch.int32, torch.int64
    nd = None if num_drafts is None else _rows(num_drafts, B, i32, dev, "num_drafts")
    out = torch.ops.kiln.verify_drafts(
        target_logits, draft_ids.to(device=dev, dtype=i32).contiguous(), nd, draft_probs,
        _rows(temperature, B, f32, dev, "temperature"), _rows(top_k, B, i32, dev, "top_k"),
        _rows(top_p, B, f32, dev, "top_p"), _rows(min_p, B, f32, dev, "min_p"),
        _rows(repetition_penalty, B, f32, dev, "repetition_penalty"),
        _rows(presence_penalty, B, f32, dev, "presence_penalty"),
        _rows(frequency_penalty, B, f32, dev, "frequency_penalty"),
        _rows(seed, B, i64, dev, "seed"), _rows(offset, B, i64, dev, "offset"), history_offsets,
        history_ids, prompt_lengths)
    return _sampling.VerifyResult(*out)


def warm_up(logits, *, num_samples=1, history_ids=None):
    """One eager call with these shapes on the current stream, so the sampler
    and workspace a later call of at most these shapes needs exist before a
    CUDA graph capture (nothing is allocated inside the captured region)."""
    B = logits.shape[0]
    offs = ids = None
    if history_ids is not None:
        n = history_ids.shape[0]
        offs = torch.zeros(B + 1, dtype=torch.int64, device=logits.device)
        offs[-1] = n
        ids = torch.zeros(n, dtype=torch.int32, device=logits.device)
    sample(logits, num_samples=num_samples, history_offsets=offs, history_ids=ids,
           return_probs=True)
    top_k_top_p_sampling_from_logits(logits, 0, 1.0)
