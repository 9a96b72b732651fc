"""Every self-supervised objective of the five papers as a small, pure function.

Conventions shared by all functions here:

* Inputs are batches of row vectors, ``(B, D)``; the loss is a 0-dim tensor.
* Stop-gradients belong to the caller (a method decides what is a target), except for the CaSSLe distillation losses,
  whose ``z_frozen`` argument comes from a frozen network and is always detached here.
* Under ``torch.autocast`` every loss runs in float32 with autocast switched off: the similarity matrices, the
  normalisations and the soft-maxes are where bf16/fp16 lose the most. float64 inputs stay float64 (for gradcheck).
* Arguments are validated; a ``ValueError`` names the argument, what was given and what is allowed.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "nt_xent",
    "negative_cosine",
    "byol_loss",
    "info_nce",
    "barlow_twins",
    "vicreg",
    "vicreg_from_terms",
    "vicreg_terms",
    "sinkhorn",
    "swav_loss",
    "similarity_distribution",
    "similarity_kl",
    "dogo_kl",
    "contrastive_distillation",
    "predictive_distillation",
    "decorrelative_distillation",
    "predictive_mse",
    "knowledge_distillation",
]

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _in_float32(loss_fn: Callable) -> Callable:
    """Run ``loss_fn`` with autocast off and half-precision tensor arguments upcast to float32."""

    def upcast(value):
        return value.float() if isinstance(value, Tensor) and value.dtype in _LOW_PRECISION else value

    @functools.wraps(loss_fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
        device_type = tensors[0].device.type if tensors else "cpu"
        with torch.autocast(device_type=device_type, enabled=False):
            return loss_fn(*map(upcast, args), **{k: upcast(v) for k, v in kwargs.items()})

    return wrapper


# ---------------------------------------------------------------------------------------------------------------------
# argument checks


def _check_positive(name: str, value: float) -> None:
    if not value > 0:  # also rejects NaN
        raise ValueError(f"{name} must be > 0, got {value}")


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


def _check_matrix(name: str, x: Tensor, min_rows: int = 1) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 2-D tensor (B, D), got {shape}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs a batch of at least {min_rows} rows, got shape {tuple(x.shape)}")


def _check_pair(name1: str, x1: Tensor, name2: str, x2: Tensor, min_rows: int = 1) -> None:
    _check_matrix(name1, x1, min_rows)
    _check_matrix(name2, x2, min_rows)
    if x1.shape != x2.shape:
        raise ValueError(
            f"{name1} and {name2} must have the same shape (B, D), got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


# ---------------------------------------------------------------------------------------------------------------------
# contrastive


@_in_float32
def nt_xent(
    z1: Tensor, z2: Tensor, temperature: float = 0.5, normalize: bool = True, reduction: str = "mean"
) -> Tensor:
    """NT-Xent, the SimCLR contrastive loss (Chen et al., 2020, arXiv:2002.05709).

    The 2B projections z = [z1; z2] are each an anchor; the positive of anchor i is the other view of the same image,
    and the 2B - 1 other projections are the candidates::

        s_ij = z_i . z_j / (|z_i| |z_j|)          (normalize=True; raw dot product z_i . z_j when False)
        l_i  = -log( exp(s_i,pos(i) / tau) / sum_{k != i} exp(s_ik / tau) )
        loss = (1 / 2B) sum_i l_i                 (reduction="mean"; "sum" gives sum_i l_i, "none" the 2B values)

    Conventions in the papers we teach (FKT, DoGo, CaSSLe: arXiv 2304.01354, 2104.09866, 2112.04215):

    * FKT (Chhipa et al., 2023, arXiv:2304.01354) released code: tau = 0.5, ``normalize=False`` (raw dot product).
    * DoGo (Bhat et al., 2021, arXiv:2104.09866): tau = 0.5, cosine, sum / 2N, which equals ``reduction="mean"``.
    * CaSSLe / solo-learn (Fini et al., 2022, arXiv:2112.04215): tau = 0.2, cosine, mean.

    Args:
        z1: (B, D) projections of view 1.  z2: (B, D) projections of view 2 (row i = same image as z1[i]); B >= 2.
        temperature: tau > 0.
        normalize: L2-normalise the rows first (cosine similarity, the paper's formula).
        reduction: "mean" | "sum" | "none".
    Returns:
        scalar loss, or (2B,) per-anchor losses for ``reduction="none"``.
    """
    _check_pair("z1", z1, "z2", z2, min_rows=2)
    _check_positive("temperature", temperature)
    _check_choice("reduction", reduction, ("mean", "sum", "none"))
    batch = z1.shape[0]
    z = torch.cat([z1, z2])
    if normalize:
        z = F.normalize(z, dim=1)
    logits = (z @ z.T / temperature).fill_diagonal_(float("-inf"))  # an anchor is never its own candidate
    positives = torch.arange(2 * batch, device=z.device).roll(batch)  # i <-> i + B
    return F.cross_entropy(logits, positives, reduction=reduction)


@_in_float32
def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """InfoNCE with a queue of negatives, the MoCo loss (He et al., 2020, arXiv:1911.05722; v2: arXiv:2003.04297).

    ::

        q_i, k_i <- q_i / |q_i|, k_i / |k_i|
        logits_i = [q_i . k_i, q_i . n_1, ..., q_i . n_K] / tau
        loss     = (1 / B) sum_i -log softmax(logits_i)_0        (cross-entropy to index 0, the positive)

    Args:
        q: (B, D) queries (online network).  k: (B, D) positive keys (momentum network; detach them, caller's job).
        queue: (K, D) negative keys, K >= 1, **already L2-normalised** (MoCo stores normalised keys).
        temperature: tau > 0 (MoCo v2+ and CaSSLe: 0.2).
    Returns:
        scalar loss.  MoCo v2+ symmetrises it: ``info_nce(q1, k2, queue2) + info_nce(q2, k1, queue1)``.
    """
    _check_pair("q", q, "k", k)
    _check_matrix("queue", queue)
    if queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue must have shape (K, {q.shape[1]}) to match q, got {tuple(queue.shape)}")
    _check_positive("temperature", temperature)
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q @ queue.to(q.dtype).T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


# ---------------------------------------------------------------------------------------------------------------------
# predictive (no negatives)


@_in_float32
def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """Negative cosine similarity, the SimSiam loss (Chen & He, 2021, arXiv:2011.10566).

    ::

        loss = -(1 / B) sum_i p_i . z_i / (|p_i| |z_i|)           in [-1, 1]

    Args:
        p: (B, D) predictor outputs.  z: (B, D) targets; **detach z yourself** (the stop-gradient is the method's job).
    Returns:
        scalar loss. SimSiam uses ``0.5 * (negative_cosine(p1, z2.detach()) + negative_cosine(p2, z1.detach()))``.
    """
    _check_pair("p", p, "z", z)
    return -(F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1).mean()


@_in_float32
def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """Normalised mean squared error, the BYOL loss (Grill et al., 2020, arXiv:2006.07733).

    ::

        loss = (1 / B) sum_i | p_i/|p_i| - z_i/|z_i| |^2 = (1 / B) sum_i (2 - 2 cos(p_i, z_i))      in [0, 4]

    Args:
        p: (B, D) online predictions.  z: (B, D) target projections; **detach z yourself** (stop-gradient is the
        caller's job; the BYOL target comes from the momentum network).
    Returns:
        scalar loss. BYOL and CaSSLe sum it over both directions: ``byol_loss(p1, z2) + byol_loss(p2, z1)``.
    """
    _check_pair("p", p, "z", z)
    return (2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)).mean()


# ---------------------------------------------------------------------------------------------------------------------
# redundancy reduction


def _standardize(z: Tensor, eps: float) -> Tensor:
    """Per-dimension batch standardisation, exactly BatchNorm1d(affine=False) in training mode (biased variance)."""
    return (z - z.mean(dim=0)) / torch.sqrt(z.var(dim=0, unbiased=False) + eps)


def _off_diagonal(matrix: Tensor) -> Tensor:
    """The D*(D-1) off-diagonal entries of a square (D, D) matrix, flattened."""
    d = matrix.shape[0]
    return matrix.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()


@_in_float32
def barlow_twins(z1: Tensor, z2: Tensor, lambda_offdiag: float = 5e-3, scale: float = 1.0, eps: float = 1e-5) -> Tensor:
    """Barlow Twins redundancy-reduction loss (Zbontar et al., 2021, arXiv:2103.03230).

    ::

        zn = (z - mean_batch(z)) / sqrt(var_batch(z) + eps)     per dimension (BatchNorm without affine, biased var)
        C  = zn1^T zn2 / B                                      (D, D) cross-correlation
        loss = scale * [ sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2 ]

    CaSSLe's solo-learn code multiplies by ``scale=0.1`` (``scale_loss``), also in its decorrelative distiller.

    Args:
        z1, z2: (B, D) projections of the two views, B >= 2.
        lambda_offdiag: weight lambda >= 0 of the redundancy term (paper: 5e-3).
        scale: overall factor > 0.  eps: > 0, added to the variance as BatchNorm does.
    Returns:
        scalar loss; 0 when both views are equal, standardised and their dimensions decorrelated (up to eps).
    """
    _check_pair("z1", z1, "z2", z2, min_rows=2)
    _check_non_negative("lambda_offdiag", lambda_offdiag)
    _check_positive("scale", scale)
    _check_positive("eps", eps)
    c = _standardize(z1, eps).T @ _standardize(z2, eps) / z1.shape[0]
    on_diagonal = (1 - torch.diagonal(c)).pow(2).sum()
    return scale * (on_diagonal + lambda_offdiag * _off_diagonal(c).pow(2).sum())


@_in_float32
def vicreg_terms(z1: Tensor, z2: Tensor, eps: float = 1e-4, halve_variance: bool = True) -> dict[str, Tensor]:
    """The three unweighted VICReg terms (Bardes, Ponce & LeCun, 2022, arXiv:2105.04906).

    With unbiased batch statistics per dimension d (as in the official code)::

        invariance = (1 / (B D)) sum_{i,d} (z1_id - z2_id)^2                       (mean squared error)
        variance   = c sum_{z in z1,z2} (1 / D) sum_d relu(1 - sqrt(Var(z_d) + eps))
        covariance = sum_{z in z1,z2} (1 / D) sum_{d != e} Cov(z)_de^2,   Cov(z) = (z - mean)^T (z - mean) / (B - 1)

    c = 1/2 (``halve_variance=True``, the VICReg code) or 1 (``False``, the CaSSLe/solo-learn code: at the same
    weight 25 the variance term there pulls twice as hard).

    Args:
        z1, z2: (B, D) projections of the two views, B >= 2.  eps: > 0, keeps the square root differentiable at 0.
    Returns:
        dict(invariance=..., variance=..., covariance=...) of scalar tensors.
    """
    _check_pair("z1", z1, "z2", z2, min_rows=2)
    _check_positive("eps", eps)

    def variance(z: Tensor) -> Tensor:
        return F.relu(1 - torch.sqrt(z.var(dim=0) + eps)).mean()

    def covariance(z: Tensor) -> Tensor:
        centred = z - z.mean(dim=0)
        cov = centred.T @ centred / (z.shape[0] - 1)
        return _off_diagonal(cov).pow(2).sum() / z.shape[1]

    return {
        "invariance": F.mse_loss(z1, z2),
        "variance": (variance(z1) + variance(z2)) / (2 if halve_variance else 1),
        "covariance": covariance(z1) + covariance(z2),
    }


def vicreg(
    z1: Tensor,
    z2: Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    eps: float = 1e-4,
    halve_variance: bool = True,
) -> Tensor:
    """VICReg loss (Bardes, Ponce & LeCun, 2022, arXiv:2105.04906)::

        loss = sim_weight * invariance + var_weight * variance + cov_weight * covariance

    with the terms of :func:`vicreg_terms` (paper and CaSSLe weights 25 / 25 / 1).

    Args:
        z1, z2: (B, D) projections of the two views, B >= 2.  *_weight: >= 0.  eps: > 0.
        halve_variance: the variance term averaged over the two views (VICReg code) or summed (CaSSLe code).
    Returns:
        scalar loss.
    """
    return vicreg_from_terms(vicreg_terms(z1, z2, eps=eps, halve_variance=halve_variance), sim_weight, var_weight,
                             cov_weight)


def vicreg_from_terms(terms: dict[str, Tensor], sim_weight: float = 25.0, var_weight: float = 25.0,
                      cov_weight: float = 1.0) -> Tensor:
    """``sim_weight * invariance + var_weight * variance + cov_weight * covariance`` of :func:`vicreg_terms`'s
    output: the VICReg loss, for a caller that also logs the three terms. *_weight: >= 0."""
    for name, weight in (("sim_weight", sim_weight), ("var_weight", var_weight), ("cov_weight", cov_weight)):
        _check_non_negative(name, weight)
    return sim_weight * terms["invariance"] + var_weight * terms["variance"] + cov_weight * terms["covariance"]


# ---------------------------------------------------------------------------------------------------------------------
# clustering (SwAV)


@torch.no_grad()
@_in_float32
def sinkhorn(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Sinkhorn-Knopp soft cluster assignments, Algorithm 1 of SwAV (Caron et al., 2020, arXiv:2006.09882).

    Finds codes Q close to softmax(scores / epsilon) whose prototypes are used equally often::

        Q = exp(scores / epsilon)^T, Q <- Q / sum(Q)                        (K, B)
        repeat `iterations` times:
            Q <- Q / (K * row sums)         every prototype gets total mass 1/K
            Q <- Q / (B * column sums)      every sample gets total mass 1/B
        return B * Q^T                      (B, K), each row sums to 1

    Computed without gradients (the codes are targets). Subtracting the global maximum before exp leaves Q unchanged
    and avoids overflow.

    Args:
        scores: (B, K) similarities of B samples to K prototypes (SwAV: cosines of normalised z and prototypes).
        epsilon: > 0, entropic smoothing (SwAV: 0.05).  iterations: >= 1 (SwAV: 3).
    Returns:
        (B, K) codes, rows sum to 1, column sums approach B / K as iterations grow.
    """
    _check_matrix("scores", scores)
    _check_positive("epsilon", epsilon)
    if not (isinstance(iterations, int) and iterations >= 1):
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    batch, prototypes = scores.shape
    q = torch.exp((scores - scores.max()) / epsilon).T
    q = q / q.sum()
    for _ in range(iterations):
        q = q / (prototypes * q.sum(dim=1, keepdim=True))
        q = q / (batch * q.sum(dim=0, keepdim=True))
    return (q * batch).T


def _codes(scores: Tensor, queue: Tensor | None, epsilon: float, iterations: int) -> Tensor:
    """Sinkhorn codes of the batch rows, computed together with the queued scores when a queue is given."""
    if queue is None:
        return sinkhorn(scores, epsilon, iterations)
    if queue.dim() != 2 or queue.shape[1] != scores.shape[1]:
        raise ValueError(f"queue scores must have shape (Q, {scores.shape[1]}), got {tuple(queue.shape)}")
    return sinkhorn(torch.cat([queue.to(scores.dtype), scores]), epsilon, iterations)[-scores.shape[0]:]


@_in_float32
def swav_loss(
    scores1: Tensor,
    scores2: Tensor,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    iterations: int = 3,
    queue1: Tensor | None = None,
    queue2: Tensor | None = None,
    local_scores: Sequence[Tensor] = (),
) -> Tensor:
    """SwAV swapped-prediction loss (Caron et al., 2020, arXiv:2006.09882), with optional multi-crop.

    Codes q_v = sinkhorn([queue_v; scores_v])[batch rows] (no gradient) of the two global crops; every other crop
    (the other global crop and the L local crops) predicts each code, and the predictions are averaged::

        CE(q, s) = -(1/B) sum_i sum_k q_ik log softmax(s_i / tau)_k
        loss = 1/2 [ (CE(q2, scores1) + sum_l CE(q2, local_l)) / (1 + L)
                   + (CE(q1, scores2) + sum_l CE(q1, local_l)) / (1 + L) ]

    With L = 0 this is the two-view loss 1/2 [CE(q2, scores1) + CE(q1, scores2)]. Local crops only predict: they
    never make codes (SwAV's ``crops_for_assign`` = the two global crops).

    Args:
        scores1, scores2: (B, K) prototype scores of views 1 and 2 (normalised z times normalised prototypes).
        temperature: tau > 0 (SwAV/CaSSLe: 0.1).  epsilon, iterations: Sinkhorn settings (0.05, 3).
        queue1, queue2: optional (Q, K) scores of queued embeddings of each view **against the current prototypes**;
            they only enlarge the Sinkhorn problem (more samples for equipartition); the loss uses the batch rows.
        local_scores: (B, K) scores of each local crop (multi-crop; SwAV's 6 crops of 96 px).
    Returns:
        scalar loss.
    """
    _check_pair("scores1", scores1, "scores2", scores2)
    _check_positive("temperature", temperature)
    local = [s.to(scores1.dtype) for s in local_scores]  # the decorator upcasts only direct tensor arguments
    for i, s in enumerate(local):
        if s.shape != scores1.shape:
            raise ValueError(f"local_scores[{i}] must have the shape of scores1 {tuple(scores1.shape)}, "
                             f"got {tuple(s.shape)}")
    code1 = _codes(scores1, queue1, epsilon, iterations)
    code2 = _codes(scores2, queue2, epsilon, iterations)

    def predicted(code: Tensor, students: list[Tensor]) -> Tensor:
        terms = [-(code * F.log_softmax(s / temperature, dim=1)).sum(dim=1).mean() for s in students]
        return torch.stack(terms).mean()

    return (predicted(code2, [scores1, *local]) + predicted(code1, [scores2, *local])) / 2




# ---------------------------------------------------------------------------------------------------------------------
# DoGo: similarity distributions and mutual distillation


@_in_float32
def similarity_distribution(z1: Tensor, z2: Tensor, temperature: float = 0.1, log: bool = False) -> Tensor:
    """Row-wise similarity distribution of one model, DoGo (Bhat, Arani & Zonooz, 2021, arXiv:2104.09866).

    ::

        P_ij = exp(cos(z1_i, z2_j) / tau) / sum_k exp(cos(z1_i, z2_k) / tau)       (B, B), each row sums to 1

    Rows are view-1 anchors, columns view-2 samples of the same model; DoGo uses tau_kd = 0.1.

    Args:
        z1, z2: (B, D) projections of the two views of one model.  temperature: tau > 0.
        log: return log P (computed with log_softmax, stable) instead of P.
    Returns:
        (B, B) matrix P (or log P).
    """
    _check_pair("z1", z1, "z2", z2)
    _check_positive("temperature", temperature)
    logits = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature
    return F.log_softmax(logits, dim=1) if log else F.softmax(logits, dim=1)


@_in_float32
def similarity_kl(p_target: Tensor, log_p_student: Tensor, reduction: str = "batchmean") -> Tensor:
    """KL(P_target || P_student) between row distributions, as ``F.kl_div(log_p_student, p_target)`` computes it.

    ::

        total = sum_{i,j} P_target_ij (log P_target_ij - log P_student_ij)        (0 log 0 = 0)
        "batchmean": total / B      "mean": total / (B * B)      "sum": total

    DoGo's released code (Bhat et al., 2021, arXiv:2104.09866) relied on PyTorch's old default ``reduction="mean"``,
    which divides by the number of entries B*B, i.e. the per-row KL averaged over rows, divided again by B; its
    weight lambda_1 = 100 was tuned with that scale. "batchmean" is the mathematically proper average over rows.

    Args:
        p_target: (B, C) target probabilities (detach them if they come from a peer).
        log_p_student: (B, C) student log-probabilities (e.g. ``similarity_distribution(..., log=True)``).
        reduction: "batchmean" | "mean" | "sum".
    Returns:
        scalar KL >= 0, zero when the distributions are equal.
    """
    _check_pair("p_target", p_target, "log_p_student", log_p_student)
    _check_choice("reduction", reduction, ("batchmean", "mean", "sum"))
    total = (torch.xlogy(p_target, p_target) - p_target * log_p_student).sum()
    return {"sum": total, "batchmean": total / p_target.shape[0], "mean": total / p_target.numel()}[reduction]


def dogo_kl(
    z1_student: Tensor,
    z2_student: Tensor,
    z1_peer: Tensor,
    z2_peer: Tensor,
    temperature: float = 0.1,
    reduction: str = "mean",
) -> Tensor:
    """DoGo mutual-distillation term of one model (Bhat, Arani & Zonooz, 2021, arXiv:2104.09866)::

        loss = KL( P_peer.detach() || P_student ),    P = similarity_distribution(z1, z2, tau)

    The default ``reduction="mean"`` (divide by B*B) reproduces the released code, whose lambda_1 = 100 assumes it;
    pass "batchmean" for the per-row average. Model 1 adds ``lambda_1 * dogo_kl(z1_m1, z2_m1, z1_m2, z2_m2)``, model 2
    the same with the roles swapped.

    Args:
        z1_student, z2_student: (B, D) projections of the student's two views (gradients flow here).
        z1_peer, z2_peer: (B, D') projections of the peer's two views (detached here; D' may differ from D).
        temperature: tau_kd > 0 (DoGo: 0.1).  reduction: "mean" | "batchmean" | "sum".
    Returns:
        scalar loss.
    """
    if z1_student.shape[0] != z1_peer.shape[0]:
        raise ValueError(
            f"student and peer must see the same batch: got {z1_student.shape[0]} and {z1_peer.shape[0]} rows"
        )
    target = similarity_distribution(z1_peer.detach(), z2_peer.detach(), temperature)
    log_student = similarity_distribution(z1_student, z2_student, temperature, log=True)
    return similarity_kl(target, log_student, reduction)


# ---------------------------------------------------------------------------------------------------------------------
# CaSSLe distillation losses D(g(z), z_frozen) (Fini et al., 2022, arXiv:2112.04215; CaSSLe, arXiv 2112.04215)


@_in_float32
def contrastive_distillation(p: Tensor, z_frozen: Tensor, temperature: float = 0.2) -> Tensor:
    """CaSSLe contrastive distiller for SimCLR / MoCo v2+ (Fini et al., 2022, arXiv:2112.04215).

    Rows of p (current, after the predictor g) and z_frozen (frozen past network) are the same images *and* views, so
    the positives are on the diagonal; each anchor is contrasted with all N rows of the other set, positive included::

        S_ij = cos(p_i, zf_j) / tau                                           (N, N), N = 2B (both views stacked)
        loss = 1/2 [ (1/N) sum_i -log softmax_j(S_ij)_i + (1/N) sum_j -log softmax_i(S_ij)_j ]

    Args:
        p: (N, D) predicted projections g(z) of both views, ``torch.cat([g(z1), g(z2)])``.
        z_frozen: (N, D) frozen projections of the same views in the same order (detached here).
        temperature: tau > 0 (CaSSLe: 0.2).
    Returns:
        scalar loss.
    """
    _check_pair("p", p, "z_frozen", z_frozen)
    _check_positive("temperature", temperature)
    logits = F.normalize(p, dim=1) @ F.normalize(z_frozen.detach(), dim=1).T / temperature
    diagonal = torch.arange(p.shape[0], device=p.device)
    return (F.cross_entropy(logits, diagonal) + F.cross_entropy(logits.T, diagonal)) / 2


def predictive_distillation(p: Tensor, z_frozen: Tensor) -> Tensor:
    """CaSSLe predictive distiller for BYOL (Fini et al., 2022, arXiv:2112.04215)::

        loss = (1 / B) sum_i (2 - 2 cos(p_i, zf_i))       = byol_loss(p, z_frozen.detach())

    Args:
        p: (B, D) predicted projections g(z) of one view.  z_frozen: (B, D) frozen projections of the same view.
    Returns:
        scalar loss (CaSSLe averages it over the two views).
    """
    return byol_loss(p, z_frozen.detach())


def decorrelative_distillation(
    p: Tensor, z_frozen: Tensor, lambda_offdiag: float = 5e-3, scale: float = 0.1
) -> Tensor:
    """CaSSLe decorrelative distiller for Barlow Twins (Fini et al., 2022, arXiv:2112.04215)::

        loss = barlow_twins(p, z_frozen.detach(), lambda_offdiag, scale)      (CaSSLe: 5e-3 and scale 0.1)

    Args:
        p: (B, D) predicted projections g(z) of one view, B >= 2.  z_frozen: (B, D) frozen projections of that view.
    Returns:
        scalar loss.
    """
    return barlow_twins(p, z_frozen.detach(), lambda_offdiag=lambda_offdiag, scale=scale)


@_in_float32
def predictive_mse(p: Tensor, z_frozen: Tensor) -> Tensor:
    """CaSSLe distiller for VICReg, its invariance term only (Fini et al., 2022, arXiv:2112.04215)::

        loss = (1 / (B D)) sum_{i,d} (p_id - zf_id)^2             (CaSSLe weights it by lambda = 25)

    Args:
        p: (B, D) predicted projections g(z).  z_frozen: (B, D) frozen projections of the same view (detached here).
    Returns:
        scalar loss.
    """
    _check_pair("p", p, "z_frozen", z_frozen)
    return F.mse_loss(p, z_frozen.detach())


@_in_float32
def knowledge_distillation(scores_student: Tensor, scores_frozen: Tensor, temperature: float = 0.1) -> Tensor:
    """CaSSLe knowledge distiller for SwAV (Fini et al., 2022, arXiv:2112.04215); soft targets, no Sinkhorn::

        loss = -(1 / B) sum_i sum_k softmax(sf_i / tau)_k log softmax(ss_i / tau)_k

    Args:
        scores_student: (B, K) scores of normalised g(z) against the new learnable distillation prototypes.
        scores_frozen: (B, K) scores of normalised frozen z against the frozen prototypes (detached here).
        temperature: tau > 0 (CaSSLe: 0.1).
    Returns:
        scalar loss (cross-entropy; equals the target entropy plus KL, so it is not 0 at the optimum).
    """
    _check_pair("scores_student", scores_student, "scores_frozen", scores_frozen)
    _check_positive("temperature", temperature)
    targets = F.softmax(scores_frozen.detach() / temperature, dim=1)
    return -(targets * F.log_softmax(scores_student / temperature, dim=1)).sum(dim=1).mean()
