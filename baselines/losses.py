"""Loss functions, pure (tensors in, tensors out).

Completion-only cross-entropy (SRT / MRT): for the completion tokens y_1..y_T of a response
(the response and its end-of-turn token; prompt tokens are never targets)

    nll(y | x) = - sum_t log p(y_t | x, y_<t)

and one optimizer step minimises sum over its examples of nll / (completion tokens in the step):
the token-weighted mean over the whole effective batch.

Soft Preference Learning (DESIGN §6, paper 004 eq. 5), for a pair y preferred over y':

    L_SPL = - log sigmoid( alpha * [log pi(y|x) - log pi(y'|x)]
                         - beta  * [log pi_ref(y|x) - log pi_ref(y'|x)] )

with log-probabilities summed over completion tokens; alpha = beta is exactly DPO
(- log sigmoid(beta * [(log pi(y) - log pi_ref(y)) - (log pi(y') - log pi_ref(y'))])).
A step minimises the mean of L_SPL over its pairs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) per scored position, float32: logits (N, V), targets (N,) -> (N,)."""
    return -F.cross_entropy(logits.float(), targets, reduction="none")


def sequence_logprobs(token_lp: torch.Tensor, seq_index: torch.Tensor, n_seqs: int) -> torch.Tensor:
    """Sum of token log-probs per sequence: (N,) values with (N,) sequence ids -> (n_seqs,)."""
    out = torch.zeros(n_seqs, dtype=token_lp.dtype, device=token_lp.device)
    return out.index_add(0, seq_index, token_lp)


def spl_margin(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
               ref_rejected: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """alpha * (log pi(y) - log pi(y')) - beta * (log pi_ref(y) - log pi_ref(y')), per pair."""
    return alpha * (pi_chosen - pi_rejected) - beta * (ref_chosen - ref_rejected)


def spl_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Per-pair L_SPL = -log sigmoid(spl_margin(...)) (softplus form, stable for large margins)."""
    return F.softplus(-spl_margin(pi_chosen, pi_rejected, ref_chosen, ref_rejected, alpha, beta))
