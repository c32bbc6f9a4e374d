"""Log-probabilities of a sampled token, from the logits row the sampler read.

Which distribution: the model's own, a log-softmax over the whole vocabulary of the raw
logits, before logit_bias, repetition/presence/frequency penalties, temperature, top-k/top-p/
min-p and any output grammar. That is what OpenAI reports (its logprobs do not change with
temperature) and vLLM's default: a client reads how sure the model was of each token, the same
whatever the request's sampling settings, and a token the settings made likelier than the model
thought shows as such.

Only requests that ask for logprobs come here: about 0.2 ms a token on Qwen's 151,936 logits
(one exp and sum over the row, one partial sort for the top tokens).
"""

from __future__ import annotations

import math

import numpy as np

from jisu.engine.protocol import ScoredToken


def scored_token(logits: np.ndarray, token: int, top_n: int) -> ScoredToken:
    """`token`'s log-probability and the `top_n` likeliest tokens' under softmax(logits)."""
    best = float(logits.max())
    shifted = logits - best  # <= 0 everywhere: exp cannot overflow
    np.exp(shifted, out=shifted)
    log_total = best + math.log(float(shifted.sum(dtype=np.float64)))
    top: tuple[tuple[int, float], ...] = ()
    if top_n > 0:
        top_n = min(top_n, len(logits))
        ids = np.argpartition(logits, -top_n)[-top_n:]
        ids = ids[np.argsort(-logits[ids], kind="stable")]
        top = tuple((int(i), float(logits[i]) - log_total) for i in ids)
    return ScoredToken(token, float(logits[token]) - log_total, top)
