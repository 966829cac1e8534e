"""A small causal transformer that learns in context: it reads (x₁, y₁, …, x_k, y_k, x) and predicts y.

GPT-style and written plainly (Radford et al. 2019; the in-context setting of Garg, Tsipras,
Liang and Valiant 2022): pre-norm blocks of causal multi-head self-attention and an MLP, learned
or sinusoidal positions, a linear read-out. Nothing in it is specific to a task: whatever it
"learns" from the examples of a prompt happens in the forward pass.

The prompt (one token per x and one per y, so 2k tokens for k examples, then the queries)::

    token     x₁    y₁    x₂    y₂   …   x_k   y_k   x_q⁽¹⁾  x_q⁽²⁾ …
    position  0     1     2     3        2k−2  2k−1  2k      2k
    features  [x,0,0]  [0,y,1]                        [x,0,0]

An x token carries the input and zeros in the label slot; a y token carries zeros in the input
slot, the label and a flag 1 (so a label of 0 is still told apart from an input). Every query
takes position 2k, the place of the next x, and attends to the 2k example tokens and to itself
only (``prompt_mask``): many queries are answered in one pass, each exactly as if it were alone
at the end of the prompt. The prediction for an x token is read at that token, before its label.

``online(x, y)`` reads the whole sequence x₁, y₁, …, x_n, y_n with a causal mask and predicts y_i
at every x_i from the i − 1 examples before it: one pass trains every prompt length 0..n−1
(Garg et al.'s objective).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..utils import check_positive_int

__all__ = ["encode_prompt", "token_positions", "prompt_mask", "causal_mask", "CausalSelfAttention", "Block",
           "InContextTransformer", "POSITIONS", "sinusoidal_table"]

POSITIONS = ("learned", "sinusoidal")


def _check_pairs(x: Tensor, y: Tensor) -> None:
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"x and y need shape (tasks, points, features), got {tuple(x.shape)} and {tuple(y.shape)}; "
                         "add a task dimension with .unsqueeze(0) or a feature one with .unsqueeze(-1)")
    if x.shape[:2] != y.shape[:2]:
        raise ValueError(f"x {tuple(x.shape)} and y {tuple(y.shape)} must agree on (tasks, points): "
                         "one label per input")


def encode_prompt(x: Tensor, y: Tensor, x_query: Tensor | None = None) -> Tensor:
    """The prompt's tokens ``(tasks, 2k + m, x_dim + y_dim + 1)``: x₁, y₁, …, x_k, y_k, then the m queries.

    ``x`` is ``(tasks, k, x_dim)``, ``y`` is ``(tasks, k, y_dim)``, ``x_query`` ``(tasks, m, x_dim)``
    or None (no queries: the ``online`` sequence). x token: ``[x, 0, 0]``; y token: ``[0, y, 1]``.
    """
    _check_pairs(x, y)
    tasks, k, x_dim = x.shape
    y_dim = y.shape[-1]
    x_tokens = torch.cat([x, x.new_zeros(tasks, k, y_dim + 1)], dim=-1)
    y_tokens = torch.cat([y.new_zeros(tasks, k, x_dim), y, y.new_ones(tasks, k, 1)], dim=-1)
    pairs = torch.stack([x_tokens, y_tokens], dim=2).reshape(tasks, 2 * k, x_dim + y_dim + 1)
    if x_query is None:
        return pairs
    if x_query.dim() != 3 or x_query.shape[0] != tasks or x_query.shape[-1] != x_dim:
        raise ValueError(f"x_query {tuple(x_query.shape)} must be (tasks={tasks}, queries, x_dim={x_dim})")
    queries = torch.cat([x_query, x_query.new_zeros(*x_query.shape[:2], y_dim + 1)], dim=-1)
    return torch.cat([pairs, queries], dim=1)


def token_positions(n_pairs: int, n_query: int = 0, device: torch.device | str | None = None) -> Tensor:
    """Position of every token: 0..2k−1 for the examples (x_i at 2i−2, y_i at 2i−1), 2k for every query."""
    if n_pairs < 0 or n_query < 0:
        raise ValueError(f"n_pairs={n_pairs} and n_query={n_query} must be >= 0")
    return torch.cat([torch.arange(2 * n_pairs, device=device),
                      torch.full((n_query,), 2 * n_pairs, dtype=torch.long, device=device)])


def causal_mask(length: int, device: torch.device | str | None = None) -> Tensor:
    """``(length, length)`` booleans, True where token i may attend to token j: j ≤ i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def prompt_mask(n_pairs: int, n_query: int = 0, device: torch.device | str | None = None) -> Tensor:
    """Causal over the 2k example tokens; each query sees every example token and itself, no other query."""
    examples = 2 * n_pairs
    mask = causal_mask(examples + n_query, device)
    mask[examples:, examples:] = torch.eye(n_query, dtype=torch.bool, device=device)
    return mask


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention under a boolean mask: softmax(QKᵀ/√d_head, masked) V."""

    def __init__(self, d_model: int, heads: int):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be a multiple of heads={heads}")
        self.heads, self.d_head = heads, d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``h`` ``(tasks, L, d_model)``, ``mask`` ``(L, L)`` → (output, attention ``(tasks, heads, L, L)``)."""
        tasks, length, d_model = h.shape
        q, k, v = self.qkv(h).view(tasks, length, 3, self.heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        attention = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        mixed = (attention @ v).transpose(1, 2).reshape(tasks, length, d_model)
        return self.out(mixed), attention


class Block(nn.Module):
    """Pre-norm transformer block: h ← h + Attn(LN(h)); h ← h + MLP(LN(h))."""

    def __init__(self, d_model: int, heads: int, widening: int = 4):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = CausalSelfAttention(d_model, heads)
        self.mlp = nn.Sequential(nn.Linear(d_model, widening * d_model), nn.GELU(),
                                 nn.Linear(widening * d_model, d_model))

    def forward(self, h: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        mixed, attention = self.attention(self.norm1(h), mask)
        h = h + mixed
        return h + self.mlp(self.norm2(h)), attention


def sinusoidal_table(length: int, d_model: int) -> Tensor:
    """Vaswani et al.'s fixed positions: sin and cos of position / 10000^(2i/d_model)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)[:, : d_model // 2]
    return table


class InContextTransformer(nn.Module):
    """A GPT-style transformer over prompts of (x, y) examples; predicts y at every x token.

    ``forward(x_support, y_support, x_query)`` → ``(tasks, queries, y_dim)``: each query predicted
    from the support examples alone. ``forward(x, y)`` = ``online(x, y)`` → ``(tasks, n, y_dim)``:
    y_i predicted from the examples before it. ``max_points`` bounds the examples in one prompt (learned positions).
    """

    def __init__(self, x_dim: int, y_dim: int = 1, d_model: int = 64, layers: int = 4, heads: int = 4,
                 max_points: int = 64, positions: str = "learned"):
        super().__init__()
        self.x_dim = check_positive_int("x_dim", x_dim)
        self.y_dim = check_positive_int("y_dim", y_dim)
        self.max_points = check_positive_int("max_points", max_points, "the most examples a prompt may hold")
        check_positive_int("layers", layers)
        if positions not in POSITIONS:
            raise ValueError(f"positions={positions!r} is unknown; choose one of {POSITIONS}")
        self.positions = positions
        self.embed = nn.Linear(x_dim + y_dim + 1, d_model)
        if positions == "learned":
            self.position = nn.Embedding(2 * max_points + 1, d_model)
            nn.init.normal_(self.position.weight, std=0.02)
        else:
            self.register_buffer("table", sinusoidal_table(2 * max_points + 1, d_model), persistent=False)
        self.blocks = nn.ModuleList(Block(d_model, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.read_out = nn.Linear(d_model, y_dim)

    def position_vectors(self, index: Tensor) -> Tensor:
        if index.numel() and int(index.max()) > 2 * self.max_points:
            raise ValueError(f"the prompt holds more than max_points={self.max_points} examples; "
                             "build the model with a larger max_points")
        return self.position(index) if self.positions == "learned" else self.table[index]

    def run(self, tokens: Tensor, index: Tensor, mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Outputs at every token ``(tasks, L, y_dim)`` and each layer's attention ``(tasks, heads, L, L)``."""
        h = self.embed(tokens) + self.position_vectors(index)
        maps = []
        for block in self.blocks:
            h, attention = block(h, mask)
            maps.append(attention)
        return self.read_out(self.norm(h)), maps

    def _inputs(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        _check_pairs(x, y)
        if x.shape[-1] != self.x_dim or y.shape[-1] != self.y_dim:
            raise ValueError(f"the model reads x_dim={self.x_dim}, y_dim={self.y_dim}; got x {tuple(x.shape)}, "
                             f"y {tuple(y.shape)}")
        dtype = self.embed.weight.dtype
        return x.to(dtype), y.to(dtype)

    def forward(self, x: Tensor, y: Tensor, x_query: Tensor | None = None) -> Tensor:
        """``(x_support, y_support, x_query)`` → the queries' predictions; ``(x, y)`` → ``online(x, y)``."""
        if x_query is None:
            return self.online(x, y)
        return self.query_outputs(x, y, x_query)[0]

    def query_outputs(self, x_support: Tensor, y_support: Tensor, x_query: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Predictions at the queries, and the attention maps of the whole prompt."""
        x, y = self._inputs(x_support, y_support)
        k, m = x.shape[1], x_query.shape[1]
        tokens = encode_prompt(x, y, x_query.to(x.dtype))
        outputs, maps = self.run(tokens, token_positions(k, m, x.device), prompt_mask(k, m, x.device))
        return outputs[:, 2 * k:], maps

    def online(self, x: Tensor, y: Tensor) -> Tensor:
        """y_i predicted at x_i from (x_1, y_1, …, x_{i−1}, y_{i−1}), for every i at once."""
        x, y = self._inputs(x, y)
        n = x.shape[1]
        outputs, _ = self.run(encode_prompt(x, y), token_positions(n, 0, x.device), causal_mask(2 * n, x.device))
        return outputs[:, 0::2]

