"""Black-box meta-learners: networks that read a support set and output a task representation.

Every learner here is an ``nn.Module`` with three stages, reached through ``forward(..., stage=)``
so that ``torch.func.functional_call`` can run any of them with a parameter dict θ:

- ``adapt(x_support, y_support) -> state``: the task representation φ = A_θ(D^tr), a
  ``dict[str, Tensor]`` (a vector r, a recurrent state, a memory, cached activations);
- ``predict(state, x_query) -> predictions``: every query point is predicted from φ alone, the
  query points independently of each other;
- ``online(x, y) -> (predictions, state)``: the prediction at position t uses x_1..x_t and only
  the labels y_1..y_{t-1} (Santoro et al.'s offset labels), for every t at once.

Inputs carry a leading task dimension: ``x`` is ``(tasks, points, ...)`` (trailing dimensions are
flattened to ``x_dim`` features), ``y`` is ``(tasks, points, y_dim)`` floats (regression) or
``(tasks, points)`` integer classes, one-hot encoded with ``y_dim`` classes (classification).
Outputs are ``(tasks, points, y_dim)``: regression values, or class logits.

Learners: ``CNP`` (Garnelo et al. 2018, conditional neural process: mean of encoded pairs);
``LSTMLearner`` and ``MANN`` (Santoro et al. 2016: an LSTM, and an LSTM controller with an
external memory written by least-recently-used access); ``SNAIL`` (Mishra et al. 2018: causal
dilated convolutions interleaved with causal soft attention); ``FeedForward`` (Santoro et al.'s
memoryless baseline). The hypernetwork is in ``metacourse.models.hypernet``. ``Embedded`` puts
any of them on top of an image encoder (e.g. ``Conv4(None)``) trained with it, end to end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import check_positive_int

__all__ = ["BlackBoxLearner", "mlp", "CNP", "LSTMLearner", "MANN", "SNAIL", "FeedForward",
           "CausalDenseBlock", "CausalAttention", "Embedded", "STAGES", "LABEL_INPUTS"]

State = dict[str, Tensor]
STAGES = ("adapt", "predict", "online")
LABEL_INPUTS = ("previous", "own")


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear → ReLU → … → Linear through the widths in ``sizes`` (no activation at the end)."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class BlackBoxLearner(nn.Module):
    """Common input handling and the ``stage`` dispatch of every black-box learner."""

    def __init__(self, x_dim: int, y_dim: int):
        super().__init__()
        self.x_dim = check_positive_int("x_dim", x_dim)
        self.y_dim = check_positive_int("y_dim", y_dim, "regression: output size; classification: n_way")

    def forward(self, *inputs, stage: str = "predict"):
        if stage == "adapt":
            return self.adapt(*inputs)
        if stage == "predict":
            return self.predict(*inputs)
        if stage == "online":
            return self.online(*inputs)
        raise ValueError(f"stage={stage!r} is unknown; choose one of {STAGES}")

    def features(self, x: Tensor) -> Tensor:
        """``(tasks, points, ...)`` → ``(tasks, points, x_dim)`` floats."""
        if x.dim() < 2:
            raise ValueError(f"inputs need shape (tasks, points, ...), got {tuple(x.shape)}; "
                             "add a task dimension with x.unsqueeze(0)")
        flat = x.reshape(*x.shape[:2], -1)
        if flat.shape[-1] != self.x_dim:
            raise ValueError(f"{type(self).__name__} expects {self.x_dim} input features per point, "
                             f"got shape {tuple(x.shape)}; build it with x_dim={flat.shape[-1]}")
        return flat.float()

    def labels(self, y: Tensor) -> Tensor:
        """Targets as features: integer classes one-hot, real values as they are."""
        if not torch.is_floating_point(y):
            if y.numel() and (y.min() < 0 or y.max() >= self.y_dim):
                raise ValueError(f"labels must lie in 0..{self.y_dim - 1} (y_dim={self.y_dim} classes)")
            return F.one_hot(y.long(), self.y_dim).float()
        if y.shape[-1] != self.y_dim:
            raise ValueError(f"targets of shape {tuple(y.shape)} do not end in y_dim={self.y_dim}")
        return y

    def shifted_labels(self, y: Tensor) -> Tensor:
        """Santoro et al.'s offset: position t receives y_{t−1} (zeros at t = 1)."""
        features = self.labels(y)
        return torch.cat([torch.zeros_like(features[:, :1]), features[:, :-1]], dim=1)

    def adapt(self, x: Tensor, y: Tensor) -> State:
        return self.online(x, y)[1]

    def online(self, x: Tensor, y: Tensor) -> tuple[Tensor, State]:
        raise ValueError(f"{type(self).__name__} makes no online (sequential) predictions; "
                         "use objective='query'")

    def predict(self, state: State, x: Tensor) -> Tensor:
        raise NotImplementedError


def _repeat(state: State, times: int) -> State:
    """Each task's state ``times`` times (task-major), one copy per query point."""
    return {name: value.repeat_interleave(times, dim=0) for name, value in state.items()}


class CNP(BlackBoxLearner):
    """Conditional neural process: r = mean_i h([x_i, y_i]), ŷ = g([x, r]) (Garnelo et al. 2018).

    The mean makes the representation invariant to the order of the support set and lets it take
    any number of points; a point prediction trained with the task loss (the paper's decoder also
    predicts a variance).
    """

    def __init__(self, x_dim: int = 1, y_dim: int = 1, hidden: int = 128, r_dim: int = 128, layers: int = 3):
        super().__init__(x_dim, y_dim)
        self.encoder = mlp([x_dim + y_dim] + [hidden] * (layers - 1) + [r_dim])
        self.decoder = mlp([x_dim + r_dim] + [hidden] * (layers - 1) + [y_dim])

    def encode_points(self, x: Tensor, y: Tensor) -> Tensor:
        """h([x_i, y_i]) for every support point, ``(tasks, points, r_dim)``."""
        return self.encoder(torch.cat([self.features(x), self.labels(y)], dim=-1))

    def adapt(self, x: Tensor, y: Tensor) -> State:
        return {"r": self.encode_points(x, y).mean(dim=1)}

    def predict(self, state: State, x: Tensor) -> Tensor:
        features = self.features(x)
        r = state["r"].unsqueeze(1).expand(-1, features.shape[1], -1)
        return self.decoder(torch.cat([features, r], dim=-1))

    def online(self, x: Tensor, y: Tensor) -> tuple[Tensor, State]:
        """Prefix means: the prediction at t uses r_{<t}, the mean over points 1..t−1 (0 at t = 1)."""
        h = self.encode_points(x, y)
        counts = torch.arange(1, h.shape[1] + 1, device=h.device, dtype=h.dtype).view(1, -1, 1)
        prefix = h.cumsum(dim=1) / counts
        before = torch.cat([torch.zeros_like(prefix[:, :1]), prefix[:, :-1]], dim=1)
        predictions = self.decoder(torch.cat([self.features(x), before], dim=-1))
        return predictions, {"r": prefix[:, -1]}


class FeedForward(BlackBoxLearner):
    """No memory: predicts y_t from (x_t, y_{t−1}) alone (Santoro et al.'s feed-forward baseline)."""

    def __init__(self, x_dim: int = 1, y_dim: int = 1, hidden: int = 128):
        super().__init__(x_dim, y_dim)
        self.net = mlp([x_dim + y_dim, hidden, hidden, y_dim])

    def online(self, x: Tensor, y: Tensor) -> tuple[Tensor, State]:
        predictions = self.net(torch.cat([self.features(x), self.shifted_labels(y)], dim=-1))
        return predictions, {"y_last": self.labels(y)[:, -1]}

    def predict(self, state: State, x: Tensor) -> Tensor:
        features = self.features(x)
        last = state["y_last"].unsqueeze(1).expand(-1, features.shape[1], -1)
        return self.net(torch.cat([features, last], dim=-1))


class LSTMLearner(BlackBoxLearner):
    """An LSTM fed (x_t, y_{t−1}): its state after the support set is φ (Hochreiter et al. 2001)."""

    def __init__(self, x_dim: int = 1, y_dim: int = 1, hidden: int = 128):
        super().__init__(x_dim, y_dim)
        self.lstm = nn.LSTM(x_dim + y_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, y_dim)

    def online(self, x: Tensor, y: Tensor) -> tuple[Tensor, State]:
        inputs = torch.cat([self.features(x), self.shifted_labels(y)], dim=-1)
        out, (h, c) = self.lstm(inputs)
        return self.head(out), {"h": h[0], "c": c[0], "y_last": self.labels(y)[:, -1]}

    def predict(self, state: State, x: Tensor) -> Tensor:
        features = self.features(x)
        tasks, queries = features.shape[:2]
        last = state["y_last"].unsqueeze(1).expand(-1, queries, -1)
        inputs = torch.cat([features, last], dim=-1).reshape(tasks * queries, 1, -1)
        s = _repeat({"h": state["h"], "c": state["c"]}, queries)
        out, _ = self.lstm(inputs, (s["h"].unsqueeze(0), s["c"].unsqueeze(0)))
        return self.head(out).reshape(tasks, queries, -1)


class MANN(BlackBoxLearner):
    """Memory-augmented network: LSTM controller + memory with least-recently-used access (LRUA).

    Santoro et al. (2016), eqs. 1–8. At step t the controller reads [x_t, y_{t−1}, r_{t−1}] and
    emits, per head, a key k_t, a write vector a_t and a gate σ_t. a_t is written to the slot read
    at t−1 or to the least-used slot (which is erased first):
    w^w_t = σ_t w^r_{t−1} + (1 − σ_t) w^lu_{t−1};  M_t = M_{t−1} + w^w_t a_tᵀ. Reading is by
    content: w^r_t = softmax(β_t cos(k_t, M_t)), r_t = w^r_t M_t; usage
    w^u_t = γ w^u_{t−1} + w^r_t + w^w_t. Two changes: the paper's eq. 8 writes the key k_t itself,
    here a separate a_t (as in public re-implementations, e.g. tristandeleu/ntm-one-shot); and a
    learned key strength β_t ≥ 1 (the NTM's content addressing), since a softmax over cosines in
    [−1, 1] cannot single out one of 128 slots.
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 200, slots: int = 128, slot_size: int = 40,
                 heads: int = 4, gamma: float = 0.95):
        super().__init__(x_dim, y_dim)
        if heads > slots:
            raise ValueError(f"heads={heads} > slots={slots}: every head needs its own least-used slot")
        self.hidden, self.slots, self.slot_size, self.heads, self.gamma = hidden, slots, slot_size, heads, gamma
        # LSTM controller on [x_t, y_{t−1}, r_{t−1}]; the (x, y) part is projected for all t at once
        self.input_gates = nn.Linear(x_dim + y_dim, 4 * hidden)
        self.recurrent_gates = nn.Linear(hidden + heads * slot_size, 4 * hidden, bias=False)
        self.interface = nn.Linear(hidden, heads * (2 * slot_size + 2))
        self.head = nn.Linear(hidden + heads * slot_size, y_dim)

    def initial_state(self, tasks: int, like: Tensor) -> State:
        zeros = like.new_zeros
        return {"h": zeros(tasks, self.hidden), "c": zeros(tasks, self.hidden),
                "memory": like.new_full((tasks, self.slots, self.slot_size), 1e-6),
                "usage": zeros(tasks, self.slots), "read_w": zeros(tasks, self.heads, self.slots),
                "reads": zeros(tasks, self.heads * self.slot_size)}

    def step(self, s: State, input_gates: Tensor) -> State:
        """One time step: controller, LRUA write, content read; returns the new state."""
        gates = input_gates + self.recurrent_gates(torch.cat([s["h"], s["reads"]], dim=-1))
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * s["c"] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        keys, adds, gate, strength = self.interface(h).view(-1, self.heads, 2 * self.slot_size + 2).split(
            [self.slot_size, self.slot_size, 1, 1], dim=-1)
        keys, adds, gate = torch.tanh(keys), torch.tanh(adds), torch.sigmoid(gate)
        least = torch.topk(s["usage"], self.heads, dim=-1, largest=False).indices  # head i: i-th least used
        least_used = F.one_hot(least, self.slots).to(h.dtype)                    # (tasks, heads, slots)
        write_w = gate * s["read_w"] + (1 - gate) * least_used
        memory = s["memory"] * (1 - least_used.sum(1)).unsqueeze(-1) + write_w.transpose(1, 2) @ adds
        similarity = F.normalize(keys, dim=-1) @ F.normalize(memory, dim=-1).transpose(1, 2)
        read_w = torch.softmax((1 + F.softplus(strength)) * similarity, dim=-1)
        usage = self.gamma * s["usage"] + read_w.sum(1) + write_w.sum(1)
        reads = (read_w @ memory).flatten(1)
        return {"h": h, "c": c, "memory": memory, "usage": usage, "read_w": read_w, "reads": reads}

    def online(self, x: Tensor, y: Tensor) -> tuple[Tensor, State]:
        input_gates = self.input_gates(torch.cat([self.features(x), self.shifted_labels(y)], dim=-1))
        state, outputs = self.initial_state(x.shape[0], input_gates), []
        for gates in input_gates.unbind(dim=1):  # unbind, not [:, t]: its backward is one stack
            state = self.step(state, gates)
            outputs.append(torch.cat([state["h"], state["reads"]], dim=-1))
        return self.head(torch.stack(outputs, dim=1)), {**state, "y_last": self.labels(y)[:, -1]}

    def predict(self, state: State, x: Tensor) -> Tensor:
        features = self.features(x)
        tasks, queries = features.shape[:2]
        last = state["y_last"].unsqueeze(1).expand(-1, queries, -1)
        input_gates = self.input_gates(torch.cat([features, last], dim=-1)).reshape(tasks * queries, -1)
        memory_state = {k: v for k, v in state.items() if k != "y_last"}
        new = self.step(_repeat(memory_state, queries), input_gates)
        return self.head(torch.cat([new["h"], new["reads"]], dim=-1)).reshape(tasks, queries, -1)


class CausalDenseBlock(nn.Module):
    """SNAIL's DenseBlock(R, D): x ⊕ tanh(z_f) ⊙ σ(z_g), z = conv(x) a causal convolution of
    kernel 2 and dilation R. Such a convolution is two linear maps, z_t = W_past x_{t−R} + W_now x_t
    (x_{t−R} = 0 before the sequence starts): the output at t sees the inputs at t − R and t only."""

    def __init__(self, in_dim: int, filters: int, dilation: int):
        super().__init__()
        self.dilation = check_positive_int("dilation", dilation)
        self.past = nn.Linear(in_dim, 2 * filters, bias=False)
        self.now = nn.Linear(in_dim, 2 * filters)

    def _out(self, x: Tensor, z: Tensor) -> Tensor:
        f, g = z.chunk(2, dim=-1)
        return torch.cat([x, torch.tanh(f) * torch.sigmoid(g)], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        delayed = F.pad(x, (0, 0, self.dilation, 0))[:, : x.shape[1]]   # x_{t−R}, zeros first: causal
        return self._out(x, self.past(delayed) + self.now(x))

    def step(self, past: Tensor, x: Tensor) -> Tensor:
        """Output at position ``past.shape[1]`` for each row of ``x`` (tasks, queries, in_dim)."""
        t = past.shape[1]
        previous = past[:, t - self.dilation] if t >= self.dilation else torch.zeros_like(past[:, 0])
        return self._out(x, self.past(previous).unsqueeze(1) + self.now(x))


class CausalAttention(nn.Module):
    """SNAIL's AttentionBlock(K, V): x ⊕ softmax(q kᵀ/√K, masked to the past and present) v."""

    def __init__(self, in_dim: int, key_dim: int, value_dim: int):
        super().__init__()
        self.query = nn.Linear(in_dim, key_dim)
        self.key = nn.Linear(in_dim, key_dim)
        self.value = nn.Linear(in_dim, value_dim)
        self.scale = 1.0 / math.sqrt(key_dim)

    def forward(self, x: Tensor) -> Tensor:
        logits = self.query(x) @ self.key(x).transpose(1, 2) * self.scale
        future = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).triu(1)
        weights = torch.softmax(logits.masked_fill(future, float("-inf")), dim=-1)
        return torch.cat([x, weights @ self.value(x)], dim=-1)

    def step(self, past: Tensor, x: Tensor) -> Tensor:
        """Each row of ``x`` attends to all of ``past`` and to itself."""
        q = self.query(x)
        logits = torch.cat([q @ self.key(past).transpose(1, 2),
                            (q * self.key(x)).sum(-1, keepdim=True)], dim=-1) * self.scale
        weights = torch.softmax(logits, dim=-1)
        read = weights[..., :-1] @ self.value(past) + weights[..., -1:] * self.value(x)
        return torch.cat([x, read], dim=-1)


class SNAIL(BlackBoxLearner):
    """Simple neural attentive meta-learner (Mishra et al. 2018).

    Embedding → Attention → TC → Attention → TC → Attention → linear head, where TC(T) is
    ⌈log₂ T⌉ dense blocks with dilations 1, 2, 4, …: the convolutions aggregate nearby steps, the
    attention reads any earlier step. φ is the input of every block at every support position
    (SNAIL keeps the whole support set in context: its state grows with K).

    ``label_input`` says what each position reads besides x_t: ``"previous"``, y_{t−1} (Santoro
    et al.'s offset, needed for online prediction); ``"own"``, SNAIL's few-shot classification
    input: every support image with its own label, the query with none (zeros), so the support
    set can only be read with ``adapt`` / ``predict``, not ``online``.
    """

    def __init__(self, x_dim: int = 1, y_dim: int = 1, max_len: int = 16, channels: int = 32,
                 filters: int = 32, key_dim: int = 32, value_dim: int = 32, tc_blocks: int = 2,
                 label_input: str = "previous"):
        super().__init__(x_dim, y_dim)
        if label_input not in LABEL_INPUTS:
            raise ValueError(f"label_input={label_input!r} is unknown; choose one of {LABEL_INPUTS}")
        self.label_input = label_input
        self.embed = nn.Sequential(nn.Linear(x_dim + y_dim, channels), nn.ReLU())
        blocks, width = [], channels
        for i in range(2 * tc_blocks + 1):
            if i % 2 == 0:
                blocks.append(CausalAttention(width, key_dim, value_dim))
                width += value_dim
            else:
                for level in range(max(1, math.ceil(math.log2(max_len)))):
                    blocks.append(CausalDenseBlock(width, filters, 2 ** level))
                    width += filters
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width, y_dim)

    def _run(self, x: Tensor, label_features: Tensor, y: Tensor) -> tuple[Tensor, State]:
        h = self.embed(torch.cat([self.features(x), label_features], dim=-1))
        state = {}
        for i, block in enumerate(self.blocks):
            state[f"block{i}"] = h
            h = block(h)
        state["y_last"] = self.labels(y)[:, -1]
        return self.head(h), state

    def online(self, x: Tensor, y: Tensor) -> tuple[Tensor, State]:
        if self.label_input == "own":
            raise ValueError("SNAIL(label_input='own') reads each label together with its input, so an "
                             "online prediction would see its own answer; use label_input='previous'")
        return self._run(x, self.shifted_labels(y), y)

    def adapt(self, x: Tensor, y: Tensor) -> State:
        if self.label_input == "own":
            return self._run(x, self.labels(y), y)[1]
        return self.online(x, y)[1]

    def predict(self, state: State, x: Tensor) -> Tensor:
        features = self.features(x)
        last = state["y_last"].unsqueeze(1).expand(-1, features.shape[1], -1)
        if self.label_input == "own":
            last = torch.zeros_like(last)
        h = self.embed(torch.cat([features, last], dim=-1))
        for i, block in enumerate(self.blocks):
            h = block.step(state[f"block{i}"], h)
        return self.head(h)


class Embedded(BlackBoxLearner):
    """A black-box learner over learned features: φ = A_θ({(e(x_i), y_i)}), ŷ = f_θ(e(x); φ).

    ``encoder`` maps a batch of inputs ``(n, ...)`` to features ``(n, learner.x_dim)`` (e.g.
    ``Conv4(None)``, a 64-d image embedding); it is trained with the learner, end to end. Each task's
    points are encoded together (``torch.func.vmap`` over tasks), so an encoder with batch
    normalisation uses the statistics of one task's support set, or of its query set, as
    ProtoNets' embedding does in this course.
    """

    def __init__(self, encoder: nn.Module, learner: BlackBoxLearner):
        super().__init__(learner.x_dim, learner.y_dim)
        self.encoder, self.learner = encoder, learner

    def features(self, x: Tensor) -> Tensor:
        if x.dim() < 3:
            raise ValueError(f"inputs need shape (tasks, points, ...), got {tuple(x.shape)}; "
                             "add a task dimension with x.unsqueeze(0)")
        out = torch.func.vmap(self.encoder)(x)
        if out.dim() != 3 or out.shape[-1] != self.x_dim:
            raise ValueError(f"the encoder gives features of shape {tuple(out.shape)}; the learner "
                             f"expects (tasks, points, {self.x_dim}): build it with x_dim={out.shape[-1]}")
        return out

    def adapt(self, x: Tensor, y: Tensor) -> State:
        return self.learner.adapt(self.features(x), y)

    def predict(self, state: State, x: Tensor) -> Tensor:
        return self.learner.predict(state, self.features(x))

    def online(self, x: Tensor, y: Tensor) -> tuple[Tensor, State]:
        return self.learner.online(self.features(x), y)
