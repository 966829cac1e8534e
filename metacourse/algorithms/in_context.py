"""In-context learning: a transformer meta-trained so that reading a task's examples is adapting to it.

Garg, Tsipras, Liang and Valiant (NeurIPS 2022, arXiv:2208.01066): train a causal transformer
M_θ on prompts P = (x₁, f(x₁), …, x_k, f(x_k), x) of random functions f ~ p(f) to predict f(x).
Adaptation is the forward pass — the black-box learner of lecture 03 with attention over the
examples in place of a mean or a recurrent state.

    (1) predict      ŷ = M_θ(x₁, y₁, …, x_k, y_k, x)                      no gradient step
    (2) online loss  L_T(θ) = (1/n) Σ_{i=1..n} ℓ(M_θ(P_{<i}, x_i), y_i)   objective "prefix":
                     every prompt length k = 0..n−1 in one causal pass (Garg et al.)
    (2') query loss  L_T(θ) = (1/m) Σ_q ℓ(M_θ(D^tr, x_q), y_q)           objective "query"
    (3) meta-loss    L(θ) = (1/|B|) Σ_{T ∈ B} L_T(θ)
    (4) outer step   θ ← θ − β ∇_θ L(θ)        (Adam; optionally ‖∇_θ L‖ clipped)

Linear regression tasks f(x) = wᵀx, w ~ N(0, I_d), x ~ N(0, I_d), and the estimators the
transformer is compared with (each reads the same k examples):

    least squares   ŵ = X⁺y      (the minimum-norm solution when k < d)
    ridge           ŵ = (XᵀX + λI)⁻¹Xᵀy   (the posterior mean, i.e. Bayes-optimal, for y = wᵀx + ε,
                                           ε ~ N(0, σ²), w ~ N(0, I): λ = σ²; as σ → 0 it tends to X⁺y)
    averaging       ŵ = (1/k) Σ_i y_i x_i   (unbiased since E[xxᵀ] = I, but noisy)
    k-NN            ŷ = mean of the labels of the 3 nearest examples

| symbol | identifier |
|---|---|
| θ | ``params`` (all the transformer's weights) |
| M_θ | ``model(x_support, y_support, x_query)``, ``model.online(x, y)`` (``models.transformer``) |
| k, n | examples in the prompt; points in a training sequence (``k_shot + n_query``) |
| d | ``LinearTasks.x_dim`` |
| β | the outer optimizer's learning rate |

Lecture: lectures/10_in_context_learning.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..functional import Params, mse_loss, outer_step, params_of
from ..tasks.base import Task, TaskBatch, stack_tasks
from ..tasks.sinusoid import check_sample_request
from ..utils import check_positive_int
from .blackbox import _batch  # a single Task as a batch of one

__all__ = ["Config", "LinearTasks", "predict", "online_predictions", "task_loss", "meta_loss", "meta_step",
           "least_squares", "ridge", "averaging", "nearest_neighbours", "BASELINES", "in_context_predictor",
           "squared_errors",
           "error_by_k"]

OBJECTIVES = ("prefix", "query")


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of in-context meta-training."""

    objective: str = "prefix"
    """``"prefix"``: loss at every x of D^tr ⊕ D^ts, each predicted from the examples before it
    (eq. 2, every prompt length at once). ``"query"``: loss on D^ts after reading D^tr (eq. 2')."""
    max_grad_norm: float | None = 1.0
    """Clip the meta-gradient to this norm; ``None`` does not clip."""

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r} is unknown; choose one of {OBJECTIVES}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm={self.max_grad_norm} must be > 0, or None for no clipping")


@dataclass(frozen=True)
class LinearTasks:
    """p(T) of Garg et al.: y = wᵀx (+ ε), w ~ N(0, I_d), x ~ N(0, x_scale² I_d), ε ~ N(0, noise²).

    ``noise`` and ``x_scale`` leave the training distribution (0 and 1) to probe distribution shift.
    """

    x_dim: int = 5
    noise: float = 0.0
    x_scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int("x_dim", self.x_dim)
        if self.noise < 0 or not self.x_scale > 0:
            raise ValueError(f"noise={self.noise} must be >= 0 and x_scale={self.x_scale} > 0")

    def sample(self, n_tasks: int, k_shot: int, n_query: int, rng: np.random.Generator,
               device: torch.device | str = "cpu") -> TaskBatch:
        """``n_tasks`` random linear functions, ``k_shot`` support and ``n_query`` query points each."""
        check_sample_request(n_tasks, k_shot, n_query, rng)
        w = rng.standard_normal((n_tasks, self.x_dim, 1))
        x = self.x_scale * rng.standard_normal((n_tasks, k_shot + n_query, self.x_dim))
        y = x @ w
        y[:, :k_shot] += self.noise * rng.standard_normal((n_tasks, k_shot, 1))  # noisy examples, clean targets
        x_t = torch.as_tensor(x, dtype=torch.float32, device=device)
        y_t = torch.as_tensor(y, dtype=torch.float32, device=device)
        return TaskBatch(x_t[:, :k_shot], y_t[:, :k_shot], x_t[:, k_shot:], y_t[:, k_shot:], info={"w": w[..., 0]})


def predict(model: nn.Module, params: Params, task: Task | TaskBatch) -> Tensor:
    """Eq. (1): every query predicted from the support examples, ``(tasks, queries, y_dim)``."""
    batch = _batch(task)
    return functional_call(model, dict(params), (batch.x_support, batch.y_support, batch.x_query), strict=False)


def online_predictions(model: nn.Module, params: Params, task: Task | TaskBatch) -> tuple[Tensor, Tensor]:
    """Eq. (2): predictions at every point of D^tr ⊕ D^ts from the points before it; (predictions, targets)."""
    batch = _batch(task)
    x = torch.cat([batch.x_support, batch.x_query], dim=1)
    y = torch.cat([batch.y_support, batch.y_query], dim=1)
    return functional_call(model, dict(params), (x, y), strict=False), y


def task_loss(model: nn.Module, params: Params, task: Task | TaskBatch, cfg: Config) -> Tensor:
    """Eq. (2) or (2'): one squared-error loss per task (a scalar for a single ``Task``)."""
    batch = _batch(task)
    if cfg.objective == "prefix":
        prediction, target = online_predictions(model, params, batch)
    else:
        prediction, target = predict(model, params, batch), batch.y_query
    losses = mse_loss(prediction, target)
    return losses[0] if isinstance(task, Task) else losses


def meta_loss(model: nn.Module, params: Params, tasks: TaskBatch, cfg: Config) -> Tensor:
    """Eq. (3): the mean over tasks of the task loss, differentiable in θ."""
    return task_loss(model, params, stack_tasks(tasks), cfg).mean()


def meta_step(model: nn.Module, optimizer: torch.optim.Optimizer, tasks: TaskBatch, cfg: Config) -> dict[str, float]:
    """Eq. (4): one outer update of all the transformer's weights."""
    return outer_step(model, optimizer, meta_loss(model, params_of(model), tasks, cfg), cfg.max_grad_norm)


# ----------------------------------------------------------------------------- estimators

def least_squares(x: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
    """ŵ = X⁺y per task (minimum norm when k < d; ŵ = 0 when k = 0), predictions ``(tasks, m, 1)``."""
    if x.shape[1] == 0:
        return x_query.new_zeros(*x_query.shape[:2], y.shape[-1])
    w = torch.linalg.pinv(x.double()) @ y.double()
    return (x_query.double() @ w).to(x_query.dtype)


def ridge(x: Tensor, y: Tensor, x_query: Tensor, lam: float = 0.25) -> Tensor:
    """ŵ = (XᵀX + λI)⁻¹Xᵀy: the posterior mean under w ~ N(0, I), noise variance λ."""
    d = x.shape[-1]
    xd, yd = x.double(), y.double()
    gram = xd.transpose(1, 2) @ xd + lam * torch.eye(d, dtype=torch.float64, device=x.device)
    w = torch.linalg.solve(gram, xd.transpose(1, 2) @ yd)
    return (x_query.double() @ w).to(x_query.dtype)


def averaging(x: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
    """ŵ = (1/k) Σ_i y_i x_i (0 when k = 0)."""
    if x.shape[1] == 0:
        return x_query.new_zeros(*x_query.shape[:2], y.shape[-1])
    w = (x * y).mean(dim=1, keepdim=True).transpose(1, 2)
    return x_query @ w


def nearest_neighbours(x: Tensor, y: Tensor, x_query: Tensor, neighbours: int = 3) -> Tensor:
    """The mean label of the ``neighbours`` examples nearest each query (all of them when k is smaller)."""
    if x.shape[1] == 0:
        return x_query.new_zeros(*x_query.shape[:2], y.shape[-1])
    nearest = torch.cdist(x_query, x).topk(min(neighbours, x.shape[1]), dim=-1, largest=False).indices
    labels = y.expand(-1, -1, 1)[..., 0].unsqueeze(1).expand(-1, x_query.shape[1], -1)
    return labels.gather(-1, nearest).mean(dim=-1, keepdim=True)


BASELINES = {"least squares": least_squares, "averaging": averaging, "3-nearest neighbours": nearest_neighbours}


def in_context_predictor(model: nn.Module, params: Params | None = None):
    """The transformer as an estimator ``(x, y, x_query) -> predictions``, called as the baselines are."""
    params = params_of(model) if params is None else params

    def transformer(x: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
        return predict(model, params, TaskBatch(x, y, x_query, x_query[..., :1]))
    return transformer


def squared_errors(prediction: Tensor, target: Tensor, normaliser: float = 1.0) -> np.ndarray:
    """Per task: the squared error averaged over its queries, divided by ``normaliser`` (use d · x_scale²,
    the error of predicting 0, for Garg et al.'s normalised error)."""
    return (((prediction - target) ** 2).mean(dim=(-2, -1)) / normaliser).detach().cpu().numpy()


def error_by_k(predictor, tasks: TaskBatch, ks: Sequence[int], normaliser: float = 1.0,
               chunk_size: int = 250) -> dict[int, np.ndarray]:
    """Per-task squared error (``squared_errors``) when ``predictor(x, y, x_query)`` reads the first k
    support examples of each task, for each k in ``ks``."""
    out = {}
    with torch.no_grad():
        for k in ks:
            if not 0 <= k <= tasks.x_support.shape[1]:
                raise ValueError(f"k={k} must lie in 0..{tasks.x_support.shape[1]} (the support points drawn)")
            scores = [squared_errors(predictor(c.x_support[:, :k], c.y_support[:, :k], c.x_query), c.y_query,
                                     normaliser) for c in tasks.split(chunk_size)]
            out[k] = np.concatenate(scores)
    return out
