"""Each loss against a slow, obvious reference written with Python loops, plus known values, invariances, gradients,
autocast behaviour and argument checks."""
import math

import pytest
import torch
import torch.nn.functional as F

from ssltutor import losses

BATCHES = [2, 5, 16]
DIMS = [3, 8, 32]
TEMPERATURES = [0.1, 0.5, 1.0]


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def pair(batch, dim, seed=0):
    return randn(batch, dim, seed=seed), randn(batch, dim, seed=seed + 1)


def close(actual, expected, tol=1e-9):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------------------------
# slow references: plain loops over samples and dimensions


def rows(x):
    """Nested Python lists of floats: the references below never touch torch."""
    return x.tolist() if isinstance(x, torch.Tensor) else x


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def cos(a, b):
    return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))


def ref_nt_xent(z1, z2, t, normalize=True):
    z = rows(z1) + rows(z2)
    n, b = len(z), len(z1)
    sim = cos if normalize else dot
    per_anchor = []
    for i in range(n):
        positive = math.exp(sim(z[i], z[(i + b) % n]) / t)
        denominator = sum(math.exp(sim(z[i], z[k]) / t) for k in range(n) if k != i)
        per_anchor.append(-math.log(positive / denominator))
    return per_anchor


def ref_info_nce(q, k, queue, t):
    q, k, queue = rows(q), rows(k), rows(queue)
    total = 0.0
    for i in range(len(q)):
        positive = math.exp(cos(q[i], k[i]) / t)
        negatives = sum(math.exp(dot(q[i], n) / math.sqrt(dot(q[i], q[i])) / t) for n in queue)
        total += -math.log(positive / (positive + negatives))
    return total / len(q)


def ref_standardize(z, eps):
    z = rows(z)
    b, d = len(z), len(z[0])
    out = [[0.0] * d for _ in range(b)]
    for j in range(d):
        mean = sum(z[i][j] for i in range(b)) / b
        var = sum((z[i][j] - mean) ** 2 for i in range(b)) / b
        for i in range(b):
            out[i][j] = (z[i][j] - mean) / math.sqrt(var + eps)
    return out


def ref_barlow(z1, z2, lam, scale, eps=1e-5):
    a, c = ref_standardize(z1, eps), ref_standardize(z2, eps)
    b, d = len(a), len(a[0])
    total = 0.0
    for i in range(d):
        for j in range(d):
            corr = sum(a[n][i] * c[n][j] for n in range(b)) / b
            total += (1 - corr) ** 2 if i == j else lam * corr**2
    return scale * total


def ref_cov(z):
    b, d = len(z), len(z[0])
    mean = [sum(z[n][j] for n in range(b)) / b for j in range(d)]
    return [[sum((z[n][i] - mean[i]) * (z[n][j] - mean[j]) for n in range(b)) / (b - 1) for j in range(d)]
            for i in range(d)]


def ref_vicreg_terms(z1, z2, eps=1e-4):
    z1, z2 = rows(z1), rows(z2)
    b, d = len(z1), len(z1[0])
    invariance = sum((z1[n][j] - z2[n][j]) ** 2 for n in range(b) for j in range(d)) / (b * d)
    variance, covariance = 0.0, 0.0
    for z in (z1, z2):
        cov = ref_cov(z)
        variance += sum(max(0.0, 1 - math.sqrt(cov[j][j] + eps)) for j in range(d)) / d / 2
        covariance += sum(cov[i][j] ** 2 for i in range(d) for j in range(d) if i != j) / d
    return invariance, variance, covariance


def ref_sinkhorn(scores, eps, iterations):
    scores = rows(scores)
    b, k = len(scores), len(scores[0])
    q = [[math.exp(scores[i][j] / eps) for i in range(b)] for j in range(k)]  # (K, B)
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        q = [[v / sum(row) / k for v in row] for row in q]
        column = [sum(q[j][i] for j in range(k)) for i in range(b)]
        q = [[q[j][i] / column[i] / b for i in range(b)] for j in range(k)]
    return [[q[j][i] * b for j in range(k)] for i in range(b)]


def ref_log_softmax(row, t):
    logits = [v / t for v in row]
    log_norm = math.log(sum(math.exp(v) for v in logits))
    return [v - log_norm for v in logits]


def ref_cross_entropy(targets, scores, t):
    """-(1/B) sum_i sum_k targets_ik log softmax(scores_i / t)_k."""
    scores = rows(scores)
    total = sum(sum(tk * lk for tk, lk in zip(targets[i], ref_log_softmax(scores[i], t))) for i in range(len(scores)))
    return -total / len(scores)


def ref_swav(s1, s2, t, eps, iterations, queue1=None, queue2=None):
    def codes(s, queue):
        full = rows(s) if queue is None else rows(queue) + rows(s)
        return ref_sinkhorn(full, eps, iterations)[-len(s):]

    return (ref_cross_entropy(codes(s2, queue2), s1, t) + ref_cross_entropy(codes(s1, queue1), s2, t)) / 2


def ref_similarity(z1, z2, t):
    z1, z2 = rows(z1), rows(z2)
    out = []
    for i in range(len(z1)):
        e = [math.exp(cos(z1[i], z2[j]) / t) for j in range(len(z2))]
        out.append([v / sum(e) for v in e])
    return out


def ref_kl(p, q):
    """sum over all entries of p log(p / q), with 0 log 0 = 0."""
    return sum(pv * math.log(pv / qv) for prow, qrow in zip(p, q) for pv, qv in zip(prow, qrow) if pv > 0)


def ref_contrastive_distillation(p, z, t):
    p, z = rows(p), rows(z)
    n = len(p)

    def one_direction(a, b):
        total = 0.0
        for i in range(n):
            e = [math.exp(cos(a[i], b[j]) / t) for j in range(n)]
            total += -math.log(e[i] / sum(e))
        return total / n

    return (one_direction(p, z) + one_direction(z, p)) / 2


# ---------------------------------------------------------------------------------------------------------------------
# against the references


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_nt_xent_matches_reference(batch, dim, t):
    z1, z2 = pair(batch, dim)
    per_anchor = ref_nt_xent(z1, z2, t)
    close(losses.nt_xent(z1, z2, t), sum(per_anchor) / len(per_anchor))
    close(losses.nt_xent(z1, z2, t, reduction="sum"), sum(per_anchor))
    close(losses.nt_xent(z1, z2, t, reduction="none"), torch.tensor(per_anchor, dtype=torch.float64))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_nt_xent_raw_dot_product_matches_reference(batch, t):
    z1, z2 = pair(batch, 8)
    z1, z2 = z1 / 3, z2 / 3  # keep exp(dot / t) in range for the float reference
    per_anchor = ref_nt_xent(z1, z2, t, normalize=False)
    close(losses.nt_xent(z1, z2, t, normalize=False), sum(per_anchor) / len(per_anchor))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", DIMS)
def test_negative_cosine_and_byol_match_reference(batch, dim):
    p, z = pair(batch, dim)
    cosines = [cos(a, b) for a, b in zip(rows(p), rows(z))]
    close(losses.negative_cosine(p, z), -sum(cosines) / batch)
    close(losses.byol_loss(p, z), sum(2 - 2 * c for c in cosines) / batch)
    close(losses.predictive_distillation(p, z), sum(2 - 2 * c for c in cosines) / batch)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_info_nce_matches_reference(batch, dim, t):
    q, k = pair(batch, dim)
    queue = F.normalize(randn(7, dim, seed=9), dim=1)
    close(losses.info_nce(q, k, queue, t), ref_info_nce(q, k, queue, t))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("lam, scale", [(5e-3, 1.0), (0.5, 0.1)])
def test_barlow_twins_matches_reference(batch, dim, lam, scale):
    z1, z2 = pair(batch, dim)
    close(losses.barlow_twins(z1, z2, lam, scale), ref_barlow(z1, z2, lam, scale))
    close(losses.decorrelative_distillation(z1, z2, lam, scale), ref_barlow(z1, z2, lam, scale))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", DIMS)
def test_vicreg_matches_reference(batch, dim):
    z1, z2 = pair(batch, dim)
    z1 = z1 * 0.5  # some dimensions below unit std so the hinge is active
    invariance, variance, covariance = ref_vicreg_terms(z1, z2)
    terms = losses.vicreg_terms(z1, z2)
    close(terms["invariance"], invariance)
    close(terms["variance"], variance)
    close(terms["covariance"], covariance)
    close(losses.vicreg(z1, z2), 25 * invariance + 25 * variance + covariance)
    close(losses.vicreg(z1, z2, 1.0, 2.0, 3.0), invariance + 2 * variance + 3 * covariance)
    close(losses.predictive_mse(z1, z2), invariance)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("prototypes", [3, 8, 32])
@pytest.mark.parametrize("iterations", [1, 3])
def test_sinkhorn_matches_reference(batch, prototypes, iterations):
    scores = F.normalize(randn(batch, 8), dim=1) @ F.normalize(randn(prototypes, 8, seed=3), dim=1).T
    expected = torch.tensor(ref_sinkhorn(scores, 0.05, iterations), dtype=torch.float64)
    close(losses.sinkhorn(scores, 0.05, iterations), expected)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("t", TEMPERATURES)
@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_matches_reference(batch, t, with_queue):
    s1, s2 = torch.tanh(randn(batch, 6)), torch.tanh(randn(batch, 6, seed=5))
    queue1, queue2 = (torch.tanh(randn(4, 6, seed=7)), torch.tanh(randn(4, 6, seed=8))) if with_queue else (None, None)
    expected = ref_swav(s1, s2, t, 0.05, 3, queue1, queue2)
    close(losses.swav_loss(s1, s2, t, queue1=queue1, queue2=queue2), expected)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_similarity_distribution_and_kl_match_reference(batch, dim, t):
    z1, z2 = pair(batch, dim)
    w1, w2 = pair(batch, dim, seed=4)
    p_student, p_peer = ref_similarity(z1, z2, t), ref_similarity(w1, w2, t)
    close(losses.similarity_distribution(z1, z2, t), torch.tensor(p_student, dtype=torch.float64))
    close(losses.similarity_distribution(z1, z2, t, log=True), torch.tensor(p_student, dtype=torch.float64).log())
    kl = ref_kl(p_peer, p_student)
    target = losses.similarity_distribution(w1, w2, t)
    log_student = losses.similarity_distribution(z1, z2, t, log=True)
    close(losses.similarity_kl(target, log_student, "sum"), kl)
    close(losses.similarity_kl(target, log_student, "batchmean"), kl / batch)
    close(losses.similarity_kl(target, log_student, "mean"), kl / batch**2)
    close(losses.dogo_kl(z1, z2, w1, w2, t), kl / batch**2)
    close(losses.dogo_kl(z1, z2, w1, w2, t, reduction="batchmean"), kl / batch)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")  # torch warns about exactly the quirk DoGo relied on
@pytest.mark.parametrize("reduction", ["batchmean", "mean", "sum"])
def test_similarity_kl_agrees_with_torch_kl_div(reduction):
    target = torch.softmax(randn(5, 5), dim=1)
    log_student = torch.log_softmax(randn(5, 5, seed=2), dim=1)
    close(losses.similarity_kl(target, log_student, reduction), F.kl_div(log_student, target, reduction=reduction))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_contrastive_distillation_matches_reference(batch, dim, t):
    p, z = pair(2 * batch, dim)
    close(losses.contrastive_distillation(p, z, t), ref_contrastive_distillation(p, z, t))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("t", TEMPERATURES)
def test_knowledge_distillation_matches_reference(batch, t):
    student, frozen = pair(batch, 10)
    targets = [[math.exp(v) for v in ref_log_softmax(row, t)] for row in rows(frozen)]
    close(losses.knowledge_distillation(student, frozen, t), ref_cross_entropy(targets, student, t))


# ---------------------------------------------------------------------------------------------------------------------
# known values and invariances


@pytest.mark.parametrize("batch", [2, 5, 8])
def test_nt_xent_identical_orthogonal_pairs(batch):
    z = torch.eye(8, dtype=torch.float64)[:batch]
    # positive similarity 1, all 2B - 2 negatives 0: loss = log(1 + (2B - 2) exp(-1 / t))
    for t in (0.05, 0.5):
        close(losses.nt_xent(z, z.clone(), t), math.log(1 + (2 * batch - 2) * math.exp(-1 / t)))
    assert losses.nt_xent(z, z, 0.05) < 1e-6


def test_nt_xent_all_identical_is_log_of_candidates():
    z = torch.ones(4, 3, dtype=torch.float64)
    close(losses.nt_xent(z, z, 0.3), math.log(2 * 4 - 1))


def test_nt_xent_symmetric_and_scale_invariant():
    z1, z2 = pair(6, 8)
    close(losses.nt_xent(z1, z2), losses.nt_xent(z2, z1))
    close(losses.nt_xent(3 * z1, 0.1 * z2), losses.nt_xent(z1, z2))
    assert not torch.isclose(losses.nt_xent(3 * z1, z2, normalize=False), losses.nt_xent(z1, z2, normalize=False))


def test_predictive_losses_known_values():
    p = randn(4, 5)
    close(losses.negative_cosine(p, 2 * p), -1.0)
    close(losses.negative_cosine(p, -p), 1.0)
    close(losses.byol_loss(p, 2 * p), 0.0)
    close(losses.byol_loss(p, -p), 4.0)


def test_info_nce_scale_invariant_in_queries_and_keys():
    q, k = pair(5, 8)
    queue = F.normalize(randn(11, 8, seed=2), dim=1)
    close(losses.info_nce(4 * q, 0.5 * k, queue), losses.info_nce(q, k, queue))


def decorrelated(batch, dim, std=1.0):
    """(batch, dim) with zero-mean, mutually orthogonal columns of biased standard deviation `std`."""
    centred = randn(batch, dim)
    centred = centred - centred.mean(0)
    q, _ = torch.linalg.qr(centred)
    return q * math.sqrt(batch) * std


def test_barlow_twins_zero_for_identical_decorrelated_views():
    z = decorrelated(16, 6)
    assert losses.barlow_twins(z, z.clone()) < 1e-8
    assert losses.barlow_twins(z, z[torch.randperm(16)]) > 0.5  # shuffled pairs are no longer correlated


def test_vicreg_zero_for_identical_spread_decorrelated_views():
    z = decorrelated(16, 6, std=2.0)
    terms = losses.vicreg_terms(z, z.clone())
    for name, value in terms.items():
        assert value.abs() < 1e-10, name


def test_vicreg_variance_of_collapsed_views():
    z = torch.ones(8, 4, dtype=torch.float64)
    close(losses.vicreg_terms(z, z)["variance"], 1 - math.sqrt(1e-4))


@pytest.mark.parametrize("batch, prototypes", [(16, 4), (32, 8), (12, 12)])
def test_sinkhorn_rows_sum_to_one_and_columns_equipartition(batch, prototypes):
    scores = torch.tanh(randn(batch, prototypes))
    uniform = torch.full((prototypes,), batch / prototypes, dtype=torch.float64)

    def imbalance(codes):
        return (codes.sum(0) - uniform).abs().max()

    codes = losses.sinkhorn(scores)
    close(codes.sum(1), torch.ones(batch, dtype=torch.float64))
    assert (codes >= 0).all()
    assert imbalance(codes) < imbalance(torch.softmax(scores / 0.05, dim=1))  # 3 iterations already balance better
    assert imbalance(losses.sinkhorn(scores, iterations=500)) < 1e-6  # and converge to equal use of prototypes


def test_sinkhorn_no_grad_no_overflow_and_shift_invariant():
    scores = randn(8, 5).requires_grad_()
    codes = losses.sinkhorn(scores)
    assert not codes.requires_grad
    close(losses.sinkhorn(scores + 100.0), codes)  # exp(100 / 0.05) would overflow without the max shift


def test_similarity_rows_sum_to_one_and_kl_zero_for_equal():
    z1, z2 = pair(7, 5)
    p = losses.similarity_distribution(z1, z2)
    close(p.sum(1), torch.ones(7, dtype=torch.float64))
    close(losses.similarity_kl(p, p.log()), 0.0)
    close(losses.dogo_kl(z1, z2, 3 * z1, z2), 0.0)  # cosine: scaling the peer changes nothing


def test_dogo_kl_detaches_the_peer():
    z1, z2 = (x.requires_grad_() for x in pair(6, 4))
    w1, w2 = (x.requires_grad_() for x in pair(6, 9, seed=2))  # peer may have another width
    losses.dogo_kl(z1, z2, w1, w2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
    assert w1.grad is None and w2.grad is None


def test_contrastive_distillation_symmetric_and_detaches_frozen():
    p, z = (x.requires_grad_() for x in pair(8, 5))
    loss = losses.contrastive_distillation(p, z)
    close(loss, losses.contrastive_distillation(z, p))
    loss.backward()
    assert p.grad.abs().sum() > 0 and z.grad is None


def test_knowledge_distillation_equals_entropy_when_student_matches():
    s = randn(6, 10)
    targets = torch.softmax(s / 0.1, dim=1)
    entropy = -(targets * targets.log()).sum(1).mean()
    close(losses.knowledge_distillation(s, s), entropy)


# ---------------------------------------------------------------------------------------------------------------------
# gradients and precision

LOSS_CALLS = {
    "nt_xent": lambda a, b: losses.nt_xent(a, b),
    "nt_xent_dot": lambda a, b: losses.nt_xent(a, b, normalize=False),
    "negative_cosine": lambda a, b: losses.negative_cosine(a, b),
    "byol": lambda a, b: losses.byol_loss(a, b),
    "info_nce": lambda a, b: losses.info_nce(a, b, torch.eye(3, a.shape[1], dtype=a.dtype)),
    "barlow": lambda a, b: losses.barlow_twins(a, b),
    "vicreg": lambda a, b: losses.vicreg(a, b),
    "swav": lambda a, b: losses.swav_loss(a, b),
    "dogo_kl": lambda a, b: losses.dogo_kl(a, b, b.flip(0), b),  # the peer must not depend on a (detached)
    "contrastive_distillation": lambda a, b: losses.contrastive_distillation(a, b),
    "predictive_mse": lambda a, b: losses.predictive_mse(a, b),
    "knowledge_distillation": lambda a, b: losses.knowledge_distillation(a, b),
}


@pytest.mark.parametrize("name", LOSS_CALLS)
def test_gradients_are_finite(name):
    a, b = (x.float().requires_grad_() for x in pair(8, 6))
    loss = LOSS_CALLS[name](a, b)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["nt_xent", "info_nce", "barlow", "vicreg", "contrastive_distillation", "dogo_kl"])
def test_gradcheck(name):
    a = randn(4, 3).requires_grad_()
    b = randn(4, 3, seed=1)
    assert torch.autograd.gradcheck(lambda x: LOSS_CALLS[name](x, b), (a,))


@pytest.mark.parametrize("name", LOSS_CALLS)
def test_autocast_bf16_computes_in_float32(name):
    a, b = (x.to(torch.bfloat16) for x in pair(8, 6))
    expected = LOSS_CALLS[name](a.float(), b.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        actual = LOSS_CALLS[name](a, b)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_autocast_gradient_reaches_bf16_inputs():
    a = randn(8, 6).to(torch.bfloat16).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses.nt_xent(a, a.detach() + 0.1).backward()
    assert a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad.float()).all()


# ---------------------------------------------------------------------------------------------------------------------
# argument checks

GOOD = pair(4, 3)
BAD_CALLS = {
    "nt_xent temperature 0": lambda: losses.nt_xent(*GOOD, temperature=0.0),
    "nt_xent temperature < 0": lambda: losses.nt_xent(*GOOD, temperature=-0.5),
    "nt_xent temperature nan": lambda: losses.nt_xent(*GOOD, temperature=float("nan")),
    "nt_xent shape": lambda: losses.nt_xent(randn(4, 3), randn(5, 3)),
    "nt_xent 1-d": lambda: losses.nt_xent(randn(4), randn(4)),
    "nt_xent batch 1": lambda: losses.nt_xent(randn(1, 3), randn(1, 3)),
    "nt_xent reduction": lambda: losses.nt_xent(*GOOD, reduction="batchmean"),
    "negative_cosine shape": lambda: losses.negative_cosine(randn(4, 3), randn(4, 2)),
    "byol shape": lambda: losses.byol_loss(randn(4, 3), randn(3, 3)),
    "info_nce temperature": lambda: losses.info_nce(*GOOD, randn(5, 3), temperature=0),
    "info_nce queue width": lambda: losses.info_nce(*GOOD, randn(5, 4)),
    "info_nce queue 1-d": lambda: losses.info_nce(*GOOD, randn(3)),
    "barlow batch 1": lambda: losses.barlow_twins(randn(1, 3), randn(1, 3)),
    "barlow lambda": lambda: losses.barlow_twins(*GOOD, lambda_offdiag=-1),
    "barlow scale": lambda: losses.barlow_twins(*GOOD, scale=0),
    "vicreg batch 1": lambda: losses.vicreg(randn(1, 3), randn(1, 3)),
    "vicreg weight": lambda: losses.vicreg(*GOOD, var_weight=-1),
    "vicreg eps": lambda: losses.vicreg_terms(*GOOD, eps=0),
    "sinkhorn epsilon": lambda: losses.sinkhorn(randn(4, 3), epsilon=0),
    "sinkhorn iterations": lambda: losses.sinkhorn(randn(4, 3), iterations=0),
    "sinkhorn 1-d": lambda: losses.sinkhorn(randn(4)),
    "swav temperature": lambda: losses.swav_loss(*GOOD, temperature=-1),
    "swav shape": lambda: losses.swav_loss(randn(4, 3), randn(4, 5)),
    "swav queue width": lambda: losses.swav_loss(*GOOD, queue1=randn(6, 5)),
    "similarity temperature": lambda: losses.similarity_distribution(*GOOD, temperature=0),
    "similarity shape": lambda: losses.similarity_distribution(randn(4, 3), randn(5, 3)),
    "kl reduction": lambda: losses.similarity_kl(*GOOD, reduction="none"),
    "kl shape": lambda: losses.similarity_kl(randn(4, 4), randn(4, 3)),
    "dogo batch mismatch": lambda: losses.dogo_kl(*GOOD, randn(5, 3), randn(5, 3)),
    "contrastive temperature": lambda: losses.contrastive_distillation(*GOOD, temperature=0),
    "contrastive shape": lambda: losses.contrastive_distillation(randn(4, 3), randn(8, 3)),
    "decorrelative batch 1": lambda: losses.decorrelative_distillation(randn(1, 3), randn(1, 3)),
    "predictive_mse shape": lambda: losses.predictive_mse(randn(4, 3), randn(4, 2)),
    "knowledge temperature": lambda: losses.knowledge_distillation(*GOOD, temperature=0),
}


@pytest.mark.parametrize("name", BAD_CALLS)
def test_bad_arguments_raise_value_error(name):
    with pytest.raises(ValueError):
        BAD_CALLS[name]()


def test_error_message_says_what_is_allowed():
    with pytest.raises(ValueError, match=r"temperature must be > 0, got -0.5"):
        losses.nt_xent(*GOOD, temperature=-0.5)
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\)"):
        losses.nt_xent(*GOOD, reduction="avg")
    with pytest.raises(ValueError, match=r"same shape"):
        losses.barlow_twins(randn(4, 3), randn(4, 2))


def ref_swav_multi_crop(s1, s2, local, t, eps, iterations):
    """SwAV's multi-crop loop: each global crop's code is predicted by every other crop, averaged."""
    q1, q2 = ref_sinkhorn(rows(s1), eps, iterations), ref_sinkhorn(rows(s2), eps, iterations)
    students1 = [s2, *local]  # crops that predict view 1's code
    students2 = [s1, *local]
    term1 = sum(ref_cross_entropy(q1, s, t) for s in students1) / len(students1)
    term2 = sum(ref_cross_entropy(q2, s, t) for s in students2) / len(students2)
    return (term1 + term2) / 2


@pytest.mark.parametrize("batch", [2, 5])
@pytest.mark.parametrize("num_local", [1, 3])
def test_swav_multi_crop_matches_reference(batch, num_local):
    s1, s2 = torch.tanh(randn(batch, 6)), torch.tanh(randn(batch, 6, seed=5))
    local = [torch.tanh(randn(batch, 6, seed=10 + i)) for i in range(num_local)]
    close(losses.swav_loss(s1, s2, 0.1, local_scores=local), ref_swav_multi_crop(s1, s2, local, 0.1, 0.05, 3))
    # no local crops: the two-view loss
    close(losses.swav_loss(s1, s2, 0.1, local_scores=[]), ref_swav(s1, s2, 0.1, 0.05, 3))
    # local crops only predict: the codes (and so the loss's targets) come from the global crops alone
    local_req = [s.clone().requires_grad_() for s in local]
    losses.swav_loss(s1, s2, 0.1, local_scores=local_req).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in local_req)
    with pytest.raises(ValueError, match="local_scores"):
        losses.swav_loss(s1, s2, 0.1, local_scores=[randn(batch, 5)])


def test_vicreg_variance_summed_as_the_cassle_code():
    z1, z2 = pair(8, 6)
    _, variance, _ = ref_vicreg_terms(z1, z2)
    halved = losses.vicreg_terms(z1, z2)
    summed = losses.vicreg_terms(z1, z2, halve_variance=False)
    close(halved["variance"], variance)
    close(summed["variance"], 2 * variance)
    close(summed["invariance"], halved["invariance"])
    close(summed["covariance"], halved["covariance"])
    close(losses.vicreg(z1, z2, halve_variance=False) - losses.vicreg(z1, z2), 25 * variance)
