"""What generated code calls at run time besides torch: input checks and masked attention.

Kept tiny and free of Python state so torch.compile(fullgraph=True) and torch.export
trace through it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def max_over(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The maximum over `dims`. When a gradient will flow, through max with indices over
    the dims flattened (as max pooling routes it: to one maximum), not amax, whose backward
    spreads it over ties with a pass of comparisons ~10× slower on CPUs (CBAM's pooling of
    32 × 256 × 28 × 28: 37 ms against 3.4); amax's forward is the faster one."""
    dims = tuple(sorted(dims))
    adjacent = dims == tuple(range(dims[0], dims[0] + len(dims)))
    if not (adjacent and torch.is_grad_enabled() and x.requires_grad):
        return x.amax(dim=dims)
    return x.flatten(dims[0], dims[-1]).max(dim=dims[0]).values


def given_or(x: torch.Tensor | None, default: torch.Tensor) -> torch.Tensor:
    """An optional input, or the input that stands in for it when it is left out."""
    return default if x is None else x


class InputShapeError(ValueError):
    """A tensor given to a compiled module does not fit the spec's declared axes."""


class AxisTooShortError(InputShapeError):
    """An axis is shorter, where an operator cuts it into windows, than one window: the input
    is too small for the module (a larger one may fit)."""


class InputTypeError(TypeError):
    """A value given to a compiled module is not a tensor of the declared kind (a float
    tensor for a float input, a bool tensor for a mask)."""


def check_input(x: torch.Tensor | None, name: str, axes: tuple[tuple[str, int | None], ...],
                dtype: str | None = None):
    """Raise, naming the axis, when `x` does not have the declared rank and sizes; with
    `dtype`, naming the input, when it is no tensor of that kind."""
    if x is None:  # an optional input left out
        return x
    if dtype is not None:
        _check_kind(x, name, dtype)
    if x.dim() != len(axes):
        names = ", ".join(a for a, _ in axes)
        raise InputShapeError(f"input {name} must have {len(axes)} axes [{names}], "
                              f"got shape {tuple(x.shape)}")
    for i, (axis, size) in enumerate(axes):
        if size is not None and x.shape[i] != size:
            raise InputShapeError(f"input {name}: axis {axis} (dim {i}) has size "
                                  f"{x.shape[i]}, expected {size}")
    return x


def _check_kind(x, name: str, dtype: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputTypeError(f"input {name} must be a tensor, got {type(x).__name__}")
    if dtype == "bool" and x.dtype != torch.bool:  # 0/1 floats would be read as weights
        raise InputTypeError(f"input {name} is a mask: a bool tensor, got {x.dtype}")
    if dtype == "float" and not x.is_floating_point():
        raise InputTypeError(f"input {name} must be a floating-point tensor, got {x.dtype}")


def check_shared_axes(tensors, names, axes) -> None:
    """Raise, naming the axis and the inputs, when inputs that share an axis name give it
    different sizes (inputs left out, None, are skipped)."""
    seen = {}
    for x, name, declared in zip(tensors, names, axes):
        if x is None:
            continue
        for i, (axis, _) in enumerate(declared):
            first = seen.setdefault(axis, (name, x.shape[i]))
            if first[1] != x.shape[i]:
                raise InputShapeError(f"axis {axis} is {first[1]} in input {first[0]} but "
                                      f"{x.shape[i]} in input {name}: inputs share their "
                                      f"named axes")


class _ContiguousGradient(torch.autograd.Function):
    """The identity, whose backward hands on the gradient contiguous. Written with
    `setup_context` so that torch.func's transforms (grad, vmap: per-sample gradients)
    can run it; as an identity it needs no vmap rule of its own. No `jvp`: dynamo refuses
    to trace a Function that has one (torch.compile of training)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass  # the backward saves nothing

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class _ContiguousGradientForward(_ContiguousGradient):
    """The same with forward mode (torch.func.jvp, jacfwd, Hessians), for eager runs."""

    @staticmethod
    def jvp(ctx, tangent: torch.Tensor) -> torch.Tensor:
        return tangent  # the identity's


def contiguous_gradient(x: torch.Tensor) -> torch.Tensor:
    """x unchanged; its gradient reaches the layer before contiguous. Guards BatchNorm
    from a torch 2.13 CPU bug: its backward at batch size 1 returns a wrong input
    gradient when the gradient it receives is strided as an einsum's or a matmul's
    backward leaves it (tests/test_lowering.py)."""
    if torch.compiler.is_compiling():  # what dynamo traces
        return _ContiguousGradient.apply(x)
    return _ContiguousGradientForward.apply(x)


def split_axis(x: torch.Tensor, dim: int, sizes: tuple[int, ...], axis: str) -> torch.Tensor:
    """x's axis `dim` split into `sizes`, one of them -1 (the rest): an error naming the
    axis when the others' product does not divide it (MobileViT's patches)."""
    whole = _product([s for s in sizes if s != -1])
    if x.shape[dim] % whole:
        raise InputShapeError(f"axis {axis} (dim {dim}) has size {x.shape[dim]}, which does "
                              f"not split into parts of {whole}: it must be a multiple of "
                              f"{whole}")
    return x.unflatten(dim, sizes)


def windows_fit(x: torch.Tensor, axes: tuple[tuple[int, str], ...], need: int,
                where: str) -> torch.Tensor:
    """x; an error naming the axis when one of `axes` ((dim, name), ...) is shorter than
    `need`, the positions one window of the operator `where` takes beside its padding."""
    for d, name in axes:
        if x.shape[d] < need:
            raise AxisTooShortError(f"axis {name} (dim {d}) has size {x.shape[d]} at {where}, "
                                    f"whose windows need at least {need} positions")
    return x


def _to_multiple(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_end(x: torch.Tensor, dims: tuple[int, ...], multiple: int) -> torch.Tensor:
    """x with zeros appended at the end of each of `dims` up to the next multiple
    (CrossFormer's detection block pads its map at the bottom and right)."""
    widths = [0, 0] * (x.dim() - min(dims))  # F.pad lists the last axis first
    for d in dims:
        widths[2 * (x.dim() - 1 - d) + 1] = _to_multiple(x.shape[d], multiple) - x.shape[d]
    return F.pad(x, widths) if any(widths) else x


def padding_mask(x: torch.Tensor, dims: tuple[int, ...], multiple: int) -> torch.Tensor:
    """[B, the dims padded to the multiple], true at the places `pad_end` appends: a
    position is padding when it is past x's size on any of the dims."""
    mask = None
    for i, d in enumerate(dims):
        n = x.shape[d]
        past = torch.arange(_to_multiple(n, multiple), device=x.device) >= n
        past = past.view(-1, *[1] * (len(dims) - 1 - i))
        mask = past if mask is None else mask | past
    return mask.unsqueeze(0).expand(x.shape[0], *mask.shape)


def crop(x: torch.Tensor, dims: tuple[int, ...], sizes) -> torch.Tensor:
    """x's leading `sizes[i]` places along each of `dims` (undoes `pad_end`)."""
    for d, n in zip(dims, sizes):
        x = x.narrow(d, 0, n)
    return x


def batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b, [..., I, K] @ [..., K, J], with the leading axes taken in the memory order
    of the larger operand and the result permuted back (a view). torch.matmul copies a
    strided operand into [batch, rows, cols] first; walked in its own memory order that
    copy reads memory in order (VOLO's windows, [B, H, W, M, K, c] read from F.unfold's
    [B, M, c, K, H·W]: the product and the fold after it ~1.5× faster)."""
    if torch.compiler.is_compiling():  # the compiler lays memory out itself; and with
        return a @ b  # dynamic shapes the strides are symbols, which cannot be sorted
    lead = a.dim() - 2
    larger = b if b.numel() >= a.numel() else a
    order = sorted(range(lead), key=lambda d: -larger.stride(d))
    if order == list(range(lead)):
        return a @ b
    axes = (*order, lead, lead + 1)
    y = a.permute(axes) @ b.permute(axes)
    return y.permute(*(axes.index(d) for d in range(lead + 2)))


def pool_over(x: torch.Tensor, fn: str, dims: int, kernel: int, stride: int, padding: int,
              **options) -> torch.Tensor:
    """F.<fn> (max_pool2d, avg_pool1d, ...) over x's last `dims` axes, the axes between the
    batch and them taken as one channel axis (none: a channel axis of 1)."""
    lead = x.shape[1:x.dim() - dims]
    flat = x.reshape(x.shape[0], -1, *x.shape[x.dim() - dims:])
    y = getattr(F, fn)(flat, kernel, stride, padding, **options)
    return y.reshape(x.shape[0], *lead, *y.shape[2:])


def resize(x: torch.Tensor, size, mode: str, **corners) -> torch.Tensor:
    """F.interpolate of the axes after the channels to `size`; x itself when it has that
    size already (any mode's interpolation to the same size is the identity)."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode=mode, **corners)


def shift(x: torch.Tensor, dims: tuple[int, ...], by: int, edge: str) -> torch.Tensor:
    """x moved `by` places along each of `dims`: out[i] = x[i − by]; the `by` places left
    at the edge keep x's own values (`keep`, S²-MLP's in-place copy), are 0 (`zero`), or
    take what moved out at the other end (`wrap`: torch.roll, in one copy)."""
    if edge == "wrap":
        return torch.roll(x, (by,) * len(dims), dims) if by else x
    for dim in dims:
        x = _shift_one(x, dim, by, edge == "zero")
    return x


def _shift_one(x: torch.Tensor, dim: int, by: int, zero: bool) -> torch.Tensor:
    n = x.shape[dim]
    if by == 0 or n == 0:
        return x
    b = min(abs(by), n)
    if by > 0:
        edge = x.narrow(dim, 0, b)
        parts = [torch.zeros_like(edge) if zero else edge, x.narrow(dim, 0, n - b)]
    else:
        edge = x.narrow(dim, n - b, b)
        parts = [x.narrow(dim, b, n - b), torch.zeros_like(edge) if zero else edge]
    return torch.cat(parts, dim=dim)


def choose(cond: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor, plan) -> torch.Tensor:
    """torch.where(cond, a, b), cond first lined up with the result by `plan` (axes it
    lacks added, its own squeezed or reordered: ops._align_plan); a condition left out
    (None, an optional input) marks nothing: b, broadcast as a and b would be."""
    if cond is None:
        return b.expand(torch.broadcast_shapes(a.shape, b.shape))
    if plan is not None:
        for d in reversed(plan["squeeze"]):
            cond = cond.squeeze(d)
        if plan["permute"] is not None:
            cond = cond.permute(*plan["permute"])
        cond = cond[plan["index"]]
    return torch.where(cond, a, b)


def length(t: torch.Tensor, dim: int, mask: torch.Tensor | None) -> torch.Tensor:
    """Each sample's number of positions along `dim`: [B], those a padding mask [B, N]
    (true = padding) leaves; [1], the axis's size, without one."""
    if mask is None:
        return torch.full((1,), t.shape[dim], dtype=t.dtype, device=t.device)
    return (~mask).sum(-1).to(t.dtype)


def softmax_seen(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the keys (the last axis); a query that sees no key (every logit −inf:
    padding hides them all) gets weights 0 and passes no gradient back, as SDPA treats it,
    instead of NaN."""
    unseen = logits.amax(-1, keepdim=True) == float("-inf")
    return logits.masked_fill(unseen, 0).softmax(-1).masked_fill(unseen, 0)


def restrict(logits: torch.Tensor, pad: torch.Tensor | None, causal: bool,
             grid: tuple[int, int] | None = None, window=None,
             fill: float = float("-inf"), partition=None, blocks=None, halo: int = 0,
             marked: torch.Tensor | None = None,
             centre: torch.Tensor | None = None) -> torch.Tensor:
    """Ω_q as a fill: keys a query may not see get -inf before the normaliser (`fill` 0
    for weights with no normaliser or an L1 one: such a key weighs nothing). `grid`
    (H, W): criss-cross, the keys in the query's row or column (the query itself once).
    `window` (radius, query sizes, key sizes, key steps, dilation[, query steps]): the
    keys i·dilation input positions from the query on every axis, |i| ≤ radius; `marked`
    [B, tokens...] (None: none), the window's global tokens: they see every key and every
    query sees them."""
    if partition is not None:  # (s, sizes): same part on every axis
        parts, sizes = partition
        same = [_part(n, parts, logits.device) for n in sizes]
        logits = _keep(logits, [p[:, None] == p[None, :] for p in same], sizes, sizes, fill)
    if blocks is not None:  # (b, shift, sizes): same block on every axis
        size, shift, sizes = blocks
        near = [_haloed(n, size, shift, halo, logits.device) for n in sizes]
        logits = _keep(logits, near, sizes, sizes, fill)
    if window is not None and centre is not None:  # within radius of each query's point
        radius, _, (nk,), (step,), *_ = window
        keys = torch.arange(nk, device=logits.device, dtype=centre.dtype) * step
        far = (centre.flatten(1)[:, :, None] - keys).abs() > radius  # [B, Q, K]
        logits = logits.masked_fill(far.unsqueeze(1), fill)
    elif window is not None:  # near on every axis, a multiple of the dilation away
        radius, q_sizes, k_sizes, steps, dilation, *q_steps = window
        q_steps = q_steps[0] if q_steps else (1,) * len(q_sizes)
        offsets = [_q_minus_k(nq, nk, step, logits.device, q_step=q_step)
                   for nq, nk, step, q_step in zip(q_sizes, k_sizes, steps, q_steps)]

        def within(part, d):
            near = [(o.abs() <= radius * d) & (o % d == 0) for o in offsets]
            return _keep(part, near, q_sizes, k_sizes, fill, marked)

        logits = per_head_groups(within, dilation, logits)
    if grid is not None:  # keys on a line through the query: apart on one axis at most
        coords = torch.stack(torch.meshgrid(*[torch.arange(n, device=logits.device)
                                              for n in grid], indexing="ij")).flatten(1)
        apart = (coords[:, :, None] != coords[:, None, :]).sum(0)  # [Q, K]
        logits = logits.masked_fill(apart > 1, fill)
    if causal:
        nq, nk = logits.shape[-2], logits.shape[-1]
        future = torch.ones(nq, nk, dtype=torch.bool, device=logits.device).triu(1)
        logits = logits.masked_fill(future, fill)
    if pad is not None:  # [B, keys...] against [B, M, Q, K], or [B, M, K] for E3
        keys = pad.reshape(pad.shape[0], *[1] * (logits.dim() - 2), -1)
        logits = logits.masked_fill(keys, fill)
    return logits


def standardise(x: torch.Tensor, dims: tuple[int, ...], eps: float) -> torch.Tensor:
    """(x − mean) / (std + eps) over `dims`, the standard deviation unbiased. The std is
    taken of the centred x (the same number): the backward then keeps only the centred
    tensor, not x as well (SGE: a map fewer saved per layer)."""
    centred = x - x.mean(dims, keepdim=True)
    return centred / (centred.std(dims, keepdim=True) + eps)


def criss_cross(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float):
    """Criss-cross attention on [B, C, *grid] maps (CCNet; its 3-D form on [B, C, H, W,
    D]): each position attends to the line through it along every grid axis, itself once
    (left out of every line but the last). Only those N·(H + W + ...) energies are
    computed, one einsum per line."""
    grid = "hwdt"[:q.dim() - 2]
    keys = [grid[:a] + "g" + grid[a + 1:] for a in range(len(grid))]  # along axis a alone
    lines = []
    for a, size in enumerate(q.shape[2:]):
        e = torch.einsum(f"bc{grid},bc{keys[a]}->b{grid}g", q, k)
        e = e if scale == 1.0 else e * scale
        if a < len(grid) - 1:  # the query itself: counted on the last line only
            itself = torch.eye(size, dtype=torch.bool, device=q.device)
            e = e.masked_fill(itself.view(*[size if i == a else 1 for i in range(len(grid))],
                                          size), float("-inf"))
        lines.append(e)
    weights = torch.softmax(torch.cat(lines, dim=-1), dim=-1).split(q.shape[2:], dim=-1)
    out = None
    for a, w in enumerate(weights):  # each line comes out in einsum's own layout:
        line = torch.einsum(f"b{grid}g,bc{keys[a]}->bc{grid}", w, v)
        out = line.contiguous() if out is None else out.add_(line)  # summed into v's
    return out


def masked_sdpa(q, k, v, pad: torch.Tensor | None, causal: bool, scale: float | None,
                enable_gqa: bool = False):
    """scaled_dot_product_attention with an optional key padding mask (True = ignore)."""
    gqa = {"enable_gqa": True} if enable_gqa else {}
    if pad is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal, scale=scale, **gqa)
    keep = ~pad.flatten(1)[:, None, None, :]  # [B, keys...] -> [B, 1, 1, K]
    if causal:
        nq, nk = q.shape[-2], k.shape[-2]
        keep = keep & torch.ones(nq, nk, dtype=torch.bool, device=q.device).tril()
    return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale, **gqa)


def per_head_groups(f, dilation, *tensors: torch.Tensor) -> torch.Tensor:
    """f(*tensors, dilation) when the dilation is one int; given one per head (axis 1 of
    every tensor), f on each run of heads that share one, concatenated back."""
    if isinstance(dilation, int):
        return f(*tensors, dilation)
    runs: list[list[int]] = []  # [dilation, heads]; a plain loop, which dynamo traces
    for d in dilation:
        if runs and runs[-1][0] == d:
            runs[-1][1] += 1
        else:
            runs.append([d, 1])
    parts = zip(*(t.split([n for _, n in runs], dim=1) for t in tensors))
    return torch.cat([f(*part, d) for part, (d, _) in zip(parts, runs)], dim=1)


def banded_sdpa(q, k, v, radius: int, dilation, causal: bool, pad: torch.Tensor | None,
                scale: float | None, marked: torch.Tensor | None = None,
                dropout: torch.nn.Module | None = None) -> torch.Tensor:
    """softmax(q·kᵀ·scale)·v over each query's window, the keys i·dilation positions away,
    |i| ≤ radius (i ≤ 0 if causal), pad [B, N] hiding keys: what the dense window mask
    gives, in time and memory that grow with N·radius, not N². q, k, v [B, M, N, d]. A
    dilation d splits the sequence into its d residues mod d, each an undilated band.
    Global tokens (`marked` [B, N], seen by and seeing every token) make it dense. A
    `dropout` module (nn.Dropout) drops weights at its p while it is training. A dilation
    per head (a tuple): each run of heads with one dilation on its own."""
    if not isinstance(dilation, int):
        return per_head_groups(
            lambda q, k, v, d: banded_sdpa(q, k, v, radius, d, causal, pad, scale, marked,
                                           dropout), dilation, q, k, v)
    n = q.shape[-2]
    p = dropout.p if dropout is not None and dropout.training else 0.0
    if marked is not None:
        return _windowed_sdpa(q, k, v, radius, dilation, causal, pad, scale, marked, p)
    hidden = None if pad is None else pad.flatten(1)[:, None, :]  # [B, 1, N]
    if dilation == 1:
        return _band(q, k, v, radius, causal, hidden, scale, p=p)
    m = -(-n // dilation)  # positions per residue; the last ones past N are padding
    beyond = torch.arange(m * dilation, device=q.device) >= n
    hidden = beyond if hidden is None else F.pad(hidden, (0, m * dilation - n), value=True)

    def residues(t):  # [..., N, d] -> [..., dilation, m, d]
        t = F.pad(t, (0, 0, 0, m * dilation - n))
        return t.unflatten(-2, (m, dilation)).transpose(-3, -2)

    y = _band(residues(q), residues(k), residues(v), radius, causal,
              hidden.unflatten(-1, (m, dilation)).transpose(-2, -1), scale,
              beyond.view(m, dilation).t(), p)
    return y.transpose(-3, -2).flatten(-3, -2)[..., :n, :]


def _windowed_sdpa(q, k, v, radius, dilation, causal, pad, scale, marked, p) -> torch.Tensor:
    """The window with global tokens as one dense mask: `restrict`'s own, as a float mask
    of 0 and −inf for SDPA."""
    n = q.shape[-2]
    mask = restrict(q.new_zeros(1, 1, n, n), pad, causal,
                    window=(radius, (n,), (n,), (1,), dilation), marked=marked)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, dropout_p=p)


def band_shape(n: int, radius: int) -> tuple[int, int, int, int]:
    """How _band cuts n queries: (blocks, queries per block, keys per block, the keys'
    padding at each end). Blocks of max(radius, 16) queries see block + 2·radius keys; when
    that is every key, one block of all n (the dense mask)."""
    block = max(radius, 16)
    blocks, span = -(-n // block), block + 2 * radius
    if span >= n:
        return 1, n, n, 0
    return blocks, block, span, radius


def _band(q, k, v, radius: int, causal: bool, hidden, scale, padding=None,
          p: float = 0.0) -> torch.Tensor:
    """The undilated band on [..., N, d]: queries in blocks of `block`, each block against
    the block + 2·radius keys its windows reach (F.unfold-like views of the padded keys),
    one masked SDPA over all blocks. `hidden` [..., N] (broadcast): keys no query sees;
    `padding` [..., N]: rows that are not real queries (each then sees its own key, so no
    row is empty: an empty row's NaN would reach the real keys' gradients)."""
    n = q.shape[-2]
    blocks, block, span, radius_pad = band_shape(n, radius)
    total = blocks * block
    extra = total - n
    queries = F.pad(q, (0, 0, 0, extra)).unflatten(-2, (blocks, block))
    keys, values = (F.pad(t, (0, 0, radius_pad, extra + radius_pad)).unfold(-2, span, block)
                    .transpose(-1, -2) for t in (k, v))  # [..., blocks, span, d]
    start = torch.arange(blocks, device=q.device)[:, None] * block - radius_pad
    where = start + torch.arange(span, device=q.device)  # [blocks, span]: key positions
    asking = start + radius_pad + torch.arange(block, device=q.device)  # [blocks, block]
    offset = where[:, None, :] - asking[:, :, None]  # key − query: [blocks, block, span]
    keep = (offset.abs() <= radius) & (where >= 0)[:, None, :] & (where < n)[:, None, :]
    if causal:
        keep = keep & (offset <= 0)
    if hidden is not None:
        shut = F.pad(hidden, (radius_pad, extra + radius_pad), value=True).unfold(-1, span, block)
        keep = keep & ~shut[..., :, None, :]
    rows = torch.arange(total, device=q.device) >= n  # the blocks' padding past N
    if padding is not None:
        rows = rows | F.pad(padding, (0, extra), value=True)
    keep = keep | ((offset == 0) & rows.unflatten(-1, (blocks, block))[..., :, :, None])
    lead = queries.shape[:-3]
    mask = keep.expand(*lead, blocks, block, span).flatten(0, -4) if keep.dim() > 3 else keep
    y = F.scaled_dot_product_attention(queries.flatten(0, -4), keys.flatten(0, -4),
                                       values.flatten(0, -4), attn_mask=mask, scale=scale,
                                       dropout_p=p)
    return y.unflatten(0, lead).flatten(-3, -2)[..., :n, :]


def blocked_sdpa(q, k, v, sizes, size: int, shift: int, bias: torch.Tensor | None,
                 scale: float | None, dropout: torch.nn.Module | None = None) -> torch.Tensor:
    """softmax(q·kᵀ·scale + bias)·v within blocks `size` wide on every axis, the first cut
    `shift` positions in (`range blocks`): q, k, v [B, M, N, d], N the axes of `sizes`
    flattened; bias [1, M, L, L] over a block's L = size^n positions (one table for every
    block: a term of q − k), or None. Computed as Swin computes its shifted windows: the
    map, padded to whole blocks at the end, rolled by −shift, so that every block lies
    within one window; one gather cuts it into the windows, a mask keeps apart what a
    window joins (the roll's wrap, the padding), one gather puts the result back."""
    order, back, apart = block_layout(tuple(sizes), size, shift, q.device)
    cells = size ** len(sizes)  # a window's L positions
    windows = order.numel() // cells
    heads = q.shape[1]

    def cut(t):  # [B, M, N, d] → [B, M·windows, L, d], a zero row standing for the padding
        t = F.pad(t, (0, 0, 0, 1)) if back.numel() < order.numel() else t
        return t.index_select(2, order).view(t.shape[0], heads * windows, cells, -1)

    mask = _block_mask(bias, apart, heads, windows, cells)
    p = dropout.p if dropout is not None and dropout.training else 0.0
    q, k, v = cut(q), cut(k), cut(v)
    if bias is not None and bias.requires_grad and torch.is_grad_enabled():
        # as biased_sdpa: for a learned mask SDPA runs its math kernel, slower than these
        scale = q.shape[-1] ** -0.5 if scale is None else scale
        weights = (torch.matmul(q * scale, k.transpose(-1, -2)) + mask).softmax(-1)
        y = torch.matmul(F.dropout(weights, p) if p else weights, v)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, dropout_p=p)
    return y.view(y.shape[0], heads, windows * cells, -1).index_select(2, back)


def halo_sdpa(q, k, v, sizes, size: int, halo: int, scale: float, zeros: bool,
              p: torch.Tensor | None = None, rows: torch.Tensor | None = None,
              bias: torch.Tensor | None = None,
              dropout: torch.nn.Module | None = None) -> torch.Tensor:
    """softmax(q·kᵀ·scale [+ p·R_{q−k}] [+ T])·v within haloed blocks (`range blocks(b,
    halo = h)`): q, k, v [B, M, N, d], N the axes of `sizes` flattened. The queries in
    blocks b wide on every axis (the map padded to whole blocks at the end), each block
    against the window of its keys, the block and h positions around it; keys beyond the
    map left out, or with `zeros` attended as zero vectors (the map zero-padded). p [B, M,
    N, d] (None: q) and rows [Σ_a b·(b + 2h), G·d], one block's (query, key) pairs on each
    axis (key j at j − h): an E2 term, its axes' products added; bias [1, M, L, S], an E4
    term on one block's pairs (the same for every block). As HaloNet computes it: one
    window of keys and values per block (unfold), then a batched product per block, [B,
    M, blocks, L, S]."""
    n, span = len(sizes), size + 2 * halo
    blocks = [-(-s // size) for s in sizes]
    queries = _blocks_of(q, sizes, blocks, size) * scale  # [B, M, W, L, d]
    keys, values = (_windows_of(t, sizes, blocks, size, halo) for t in (k, v))  # [.., S, d]
    logits = torch.matmul(queries, keys.transpose(-1, -2))  # [B, M, W, L, S]
    if rows is not None:
        if p is None:  # the queries' own E2: the scaled queries, against the table unscaled
            # to match, so that the backward keeps one copy of the queries, not two
            p, rows = queries, rows / scale
        else:
            p = _blocks_of(p, sizes, blocks, size)
        # in place: the matmul's backward does not read its result, and a new [B, M, W,
        # L, S] tensor beside the two would raise the forward's peak by one of them
        logits.add_(_halo_relative(p, rows, size, span))
    if bias is not None:
        logits.add_(bias.unsqueeze(2))
    if not zeros:  # the window's keys beyond the map are not keys
        inside = _windows_of(q.new_ones(1, 1, math.prod(sizes), 1), sizes, blocks, size, halo)
        logits.masked_fill_(inside[0, 0, :, None, :, 0] == 0, float("-inf"))
    weights = logits.softmax(-1)
    if dropout is not None and dropout.training and dropout.p:
        weights = F.dropout(weights, dropout.p)
    y = torch.matmul(weights, values)  # [B, M, W, L, dv]
    b, m, dv = y.shape[0], y.shape[1], y.shape[-1]
    y = y.view(b, m, *blocks, *(size,) * n, dv)
    y = y.permute(0, 1, *(i for a in range(n) for i in (2 + a, 2 + n + a)), 2 + 2 * n)
    y = y.reshape(b, m, *(nb * size for nb in blocks), dv)
    return y[(..., *(slice(s) for s in sizes), slice(None))].reshape(b, m, -1, dv)


def _blocks_of(t: torch.Tensor, sizes, blocks, size: int) -> torch.Tensor:
    """[B, M, N, d] → [B, M, W, L, d]: the positions in blocks `size` wide on every axis
    (W blocks of L = size^n positions), zeros past the map's end."""
    n = len(sizes)
    grid = _padded_grid(t, sizes, blocks, size, 0, 0)
    grid = grid.view(*t.shape[:2], *(i for nb in blocks for i in (nb, size)), t.shape[-1])
    grid = grid.permute(0, 1, *range(2, 2 + 2 * n, 2), *range(3, 3 + 2 * n, 2), 2 + 2 * n)
    return grid.reshape(*t.shape[:2], math.prod(blocks), size ** n, t.shape[-1])


def _windows_of(t: torch.Tensor, sizes, blocks, size: int, halo: int) -> torch.Tensor:
    """[B, M, N, d] → [B, M, W, S, d]: for each block, the window of the block and `halo`
    positions around it on every axis (S = (size + 2·halo)^n), zeros beyond the map."""
    n, span = len(sizes), size + 2 * halo
    grid = _padded_grid(t, sizes, blocks, size, halo, halo)
    for a in range(n):  # each unfold puts the blocks in the axis, the window at the end
        grid = _unfold(grid, 2 + a, span, size)
    grid = grid.permute(0, 1, *range(2, 2 + n), *range(3 + n, 3 + 2 * n), 2 + n)
    return grid.reshape(*t.shape[:2], math.prod(blocks), span ** n, t.shape[-1])


def _unfold(t: torch.Tensor, dim: int, size: int, step: int) -> torch.Tensor:
    """t.unfold(dim, size, step), a view. While compiling, the same windows gathered by
    index_select: inductor (torch 2.13) writes out of bounds in the backward of an unfold
    of an unfold (HaloNet's 2-D windows crashed the process when trained compiled)."""
    if not torch.compiler.is_compiling():
        return t.unfold(dim, size, step)
    count = (t.shape[dim] - size) // step + 1
    starts = torch.arange(count, device=t.device)[:, None] * step
    index = (starts + torch.arange(size, device=t.device)).flatten()
    return t.index_select(dim, index).unflatten(dim, (count, size)).movedim(dim + 1, -1)


def _padded_grid(t: torch.Tensor, sizes, blocks, size: int, before: int, after: int):
    """[B, M, N, d] → [B, M, *sizes, d] zero-padded by `before` at each axis's start and to
    whole blocks plus `after` at its end."""
    pad = [0, 0]  # F.pad lists the last axis first: d, then the map's axes from the end
    for s, nb in zip(reversed(sizes), reversed(blocks)):
        pad += [before, nb * size - s + after]
    return F.pad(t.unflatten(2, tuple(sizes)), pad)


def _halo_relative(p: torch.Tensor, rows: torch.Tensor, size: int, span: int) -> torch.Tensor:
    """E2 in the haloed blocks: p [B, M, W, L, d] against rows [Σ_a size·span, G·d] (each
    axis's (query, key) pairs within one block and its window) → [B, M, W, L, S], the
    axes' products q_a · R_a added."""
    n = rows.shape[0] // (size * span)
    tables = _split_pairs(rows, (size,) * n, (span,) * n)
    grid = p.unflatten(3, (size,) * n)
    return _axis_products(grid, tables, (size,) * n, (span,) * n)


def _block_mask(bias, apart, heads: int, windows: int, cells: int):
    """blocked_sdpa's mask, [1, M·windows, L, L] (a 4-D mask: with a 3-D one CPU SDPA
    leaves its fast kernel, ~3× slower): the bias, −inf where `apart`; or True where not
    apart; None when neither is given."""
    shape = (1, heads, windows, cells, cells)
    if bias is not None:
        mask = bias.view(1, heads, 1, cells, cells).expand(shape)
        if apart is not None:
            mask = mask.masked_fill(apart, float("-inf"))
    elif apart is not None:
        mask = (~apart).expand(shape)
    else:
        return None
    return mask.reshape(1, heads * windows, cells, cells)


def block_layout(sizes: tuple[int, ...], size: int, shift: int, device):
    """Where blocked_sdpa reads its windows: (order [windows·L], each window position's
    index among the N positions, N for padding; back [N], each position's window
    position; apart [windows, L, L], the pairs of a window in different blocks, or None
    when every window is one block)."""
    n = len(sizes)
    index, labels, total = 0, [], math.prod(sizes)
    real = torch.ones((), dtype=torch.bool, device=device)
    stride = total
    for a, length in enumerate(sizes):
        stride //= length
        padded = -(-length // size) * size
        source = (torch.arange(padded, device=device) + shift) % padded  # rolled → original
        shape = [1] * (2 * n)
        shape[2 * a: 2 * a + 2] = (padded // size, size)  # [windows_a, size]
        inside = (source < length).view(shape)
        index = index + source.view(shape) * stride
        real = real & inside
        labels.append(torch.where(inside, _block(source.view(shape), size, shift), -2))
    windows_first = [*range(0, 2 * n, 2), *range(1, 2 * n, 2)]

    def laid_out(t):  # [w1, b, w2, b, ...] → [windows, L]
        shape = [s for a in range(n) for s in ((-(-sizes[a] // size)), size)]
        t = t.expand(shape).permute(windows_first)
        return t.reshape(-1, size ** n)

    order = laid_out(torch.where(real, index, total)).flatten()
    back = torch.zeros(total + 1, dtype=torch.long, device=device).index_copy_(
        0, order, torch.arange(order.numel(), device=device))[:total]
    if shift == 0 and order.numel() == total:
        return order, back, None
    apart = torch.zeros((), dtype=torch.bool, device=device)
    for label in labels:
        label = laid_out(label)
        apart = apart | (label[:, :, None] != label[:, None, :])
    return order, back, apart


def biased_sdpa(q, k, v, bias: torch.Tensor, pad: torch.Tensor | None, causal: bool,
                scale: float | None, enable_gqa: bool = False):
    """scaled_dot_product_attention with a term added to its logits (ALiBi's linear bias,
    a relative bias table), -inf where the causal range or the padding mask hides a key.
    A bias that is learned while gradients are recorded sends SDPA to its math kernel,
    which on CPUs is slower than the matmuls it stands for (forward and backward, 1.2–2×
    at windows of 49 to 196 keys): the logits are then computed as written, a query that
    sees no key still getting 0."""
    if bias.requires_grad and torch.is_grad_enabled() and not enable_gqa:
        return _biased_attention(q, k, v, bias, pad, causal, scale)
    mask = restrict(bias, pad, causal)  # [1 or B, M, Q, K]
    gqa = {"enable_gqa": True} if enable_gqa else {}
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), scale=scale,
                                          **gqa)


def _biased_attention(q, k, v, bias, pad, causal: bool, scale: float | None):
    """softmax(q·k · scale + bias) · v as matmuls, −inf where the causal range or the
    padding mask hides a key; a query that sees no key gets 0."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = torch.matmul(q * scale, k.transpose(-1, -2)) + restrict(bias, None, causal)
    if pad is None:
        return torch.matmul(logits.softmax(-1), v)
    if causal:  # the keys up to a query may all be padding, the later ones not
        return torch.matmul(softmax_seen(restrict(logits, pad, False)), v)
    # a sample whose every key is padding is left unmasked and its rows zeroed after: an
    # added fill [B, 1, 1, K] (no full-size mask, nothing to send back) and no NaN
    keys = pad.reshape(pad.shape[0], 1, 1, -1)
    empty = keys.all(-1, keepdim=True)
    fill = torch.zeros(keys.shape, dtype=logits.dtype, device=logits.device)
    fill = fill.masked_fill(keys & ~empty, float("-inf"))
    return torch.matmul((logits + fill).softmax(-1), v).masked_fill(empty, 0)


def repeat_samples(t: torch.Tensor | None, sizes) -> torch.Tensor | None:
    """Each sample repeated Π sizes times (an input without an attention's carried axes:
    a padding mask seen once for each row); None stays None (an optional input)."""
    return None if t is None else t.repeat_interleave(_product(sizes), dim=0)


def fold_samples(t: torch.Tensor | None, dims: tuple[int, ...]) -> torch.Tensor | None:
    """The carried axes `dims` moved into the batch, [B, C, H, W] per H → [B·H, C, W] (a
    view when they are next to it already); None (an optional input left out) stays None."""
    if t is None:
        return None
    return t.movedim(dims, tuple(range(1, 1 + len(dims)))).flatten(0, len(dims))


def _product(sizes) -> int:
    """Π sizes, as a loop: torch.compile(fullgraph=True) does not trace math.prod of a
    generator."""
    total = 1
    for size in sizes:
        total = total * size
    return total


def causal_linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                            eps: float | None, chunk: int) -> torch.Tensor:
    """y_t = q_t Σ_{s ≤ t} k_s v_sᵀ / (q_t · Σ_{s ≤ t} k_s + eps) (eps None: no
    denominator): q [B, M, N, d], k [B, M, d, N], v [B, M, N, e] → [B, M, N, e].
    Katharopoulos et al.'s recurrent form, in chunks of c positions: within a chunk the
    [c, c] products q·k up to each query, before it the running state Σ k vᵀ of the
    earlier chunks (and Σ k for the denominator)."""
    n = q.shape[-2]
    if n == 0:  # no positions: no outputs
        return v
    c = min(chunk, n)
    k = k.transpose(-1, -2)  # [B, M, N, d]
    if n % c:  # zero keys and values after the end add nothing
        q, k, v = (F.pad(t, (0, 0, 0, c - n % c)) for t in (q, k, v))
    qc, kc, vc = (t.unflatten(-2, (-1, c)) for t in (q, k, v))  # [B, M, nc, c, ·]
    within = (qc @ kc.transpose(-1, -2)).tril()  # q_t · k_s for s ≤ t in the chunk
    states = kc.transpose(-1, -2) @ vc  # each chunk's Σ k vᵀ: [B, M, nc, d, e]
    y = within @ vc + qc @ _earlier_chunks(states)
    if eps is not None:
        sums = _earlier_chunks(kc.sum(-2, keepdim=True))  # Σ k before each chunk: [·, 1, d]
        y = y / (within.sum(-1, keepdim=True) + qc @ sums.transpose(-1, -2) + eps)
    return y.flatten(2, 3)[:, :, :n]


def _earlier_chunks(t: torch.Tensor) -> torch.Tensor:
    """For each chunk (axis 2), the sum of the chunks before it: an exclusive cumulative
    sum (zeros for the first; not cumsum − t, which loses precision to cancellation)."""
    return torch.cat([torch.zeros_like(t[:, :, :1]), t[:, :, :-1].cumsum(2)], 2)


def drop_keys(k: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
    """Keys laid out [B, M, d, K] with the masked ones (pad True) zeroed: a zero key adds
    nothing to linear attention's sums."""
    return k if pad is None else k * ~pad.flatten(1)[:, None, None, :]


# ---------------------------------------------------------------------------- positions


def _part(n: int, parts: int, device) -> torch.Tensor:
    """Which of `parts` parts each of n indices falls in: n // parts wide, the last part
    taking the remainder (all in the last when n < parts, as OCNet's slicing leaves it)."""
    step = n // parts
    i = torch.arange(n, device=device)
    if step == 0:
        return torch.full_like(i, parts - 1)
    return torch.clamp(i // step, max=parts - 1)


def _block(i: torch.Tensor, size: int, shift: int) -> torch.Tensor:
    """The block of each index in i: blocks `size` wide, the first cut `shift` in (the
    indices before it in block −1)."""
    return torch.div(i - shift, size, rounding_mode="floor")


def _haloed(n: int, size: int, shift: int, halo: int, device) -> torch.Tensor:
    """[n, n]: whether key j lies in query i's block, or within `halo` positions of it."""
    block = _block(torch.arange(n, device=device), size, shift)
    start = block * size + shift  # the first position of each query's block
    j = torch.arange(n, device=device)
    return (j >= start[:, None] - halo) & (j < start[:, None] + size + halo)


def _keep(logits: torch.Tensor, per_axis, q_sizes, k_sizes, fill: float,
          marked: torch.Tensor | None = None) -> torch.Tensor:
    """`fill` where a (query, key) pair fails one of the per-axis conditions [nq_a, nk_a],
    unless the query or the key is a marked (global) token of its sample."""
    passed = _per_axis_sum([c.to(logits.dtype) for c in per_axis], q_sizes, k_sizes)
    hidden = passed != len(per_axis)  # [Q, K]
    if marked is not None:  # [B, Q = K] -> [B, 1..., Q, K]
        tokens = marked.flatten(1)
        hidden = hidden & ~(tokens[:, :, None] | tokens[:, None, :])
        hidden = hidden.view(hidden.shape[0], *[1] * (logits.dim() - 3), *hidden.shape[1:])
    return logits.masked_fill(hidden, fill)


def _q_minus_k(nq: int, nk: int, step: int, device, dtype=None, q_step: int = 1,
               k_origin: int = 0) -> torch.Tensor:
    """[nq, nk]: the position of query i minus that of key j on one axis; key j sits at
    input position j·step + k_origin (keys pooled with a stride; a halo's window starts
    before its block), query i at i·q_step."""
    q = torch.arange(nq, device=device, dtype=dtype) * q_step
    k = torch.arange(nk, device=device, dtype=dtype) * step + k_origin
    return q[:, None] - k[None, :]


def sinusoid_pairs(like: torch.Tensor, q_sizes, k_sizes, steps, dim: int, wave: float,
                   magnitude: float, q_steps=None, k_origin: int = 0) -> torch.Tensor:
    """R_{q−k} for each axis a and each (query, key) index pair on it: [Σ_a nq·nk, dim].
    Axis a's rows hold sin and cos of (q − step·k)·magnitude / wave^(2n·j/dim) in their
    block of dim/n features (n axes) and zeros elsewhere, so that a linear map of a row
    is that map's share for the axis: summed over the axes, the map of the
    concatenated encoding."""
    n = len(q_sizes)
    per = dim // n
    j = torch.arange(per // 2, device=like.device, dtype=like.dtype)
    period = wave ** (j * (2 * n / dim))
    rows = []
    for a, (nq, nk, step, q_step) in enumerate(zip(q_sizes, k_sizes, steps,
                                                   q_steps or (1,) * n)):
        delta = _q_minus_k(nq, nk, step, like.device, like.dtype, q_step, k_origin)
        angle = (delta * magnitude)[..., None] / period
        code = torch.cat([angle.sin(), angle.cos()], dim=-1).reshape(nq * nk, per)
        rows.append(F.pad(code, (a * per, dim - (a + 1) * per)))
    return torch.cat(rows)


def distance_pairs(like: torch.Tensor, q_sizes, k_sizes, steps, q_steps=None,
                   k_origin: int = 0) -> torch.Tensor:
    """|q_step·q − step·k| for each axis a and each (query, key) index pair on it, in
    column a: [Σ_a nq·nk, n], laid out as sinusoid_pairs' rows (zeros in the other axes'
    columns)."""
    n, rows = len(q_sizes), []
    for a, (nq, nk, step, q_step) in enumerate(zip(q_sizes, k_sizes, steps,
                                                   q_steps or (1,) * n)):
        d = _q_minus_k(nq, nk, step, like.device, like.dtype, q_step, k_origin)
        d = d.abs().reshape(nq * nk, 1)
        rows.append(F.pad(d, (a, n - a - 1)))
    return torch.cat(rows)


def axis_offset_pairs(like: torch.Tensor, q_sizes, k_sizes, steps, radii, q_steps=None,
                      k_origin: int = 0) -> torch.Tensor:
    """`axis_offsets(R)`: for each axis a and each (query, key) index pair on it, the
    one-hot of the key's offset k − q (in input positions) within R_a, in axis a's block
    of 2R_a + 1 features (zeros elsewhere, and all zeros beyond R_a): [Σ_a nq·nk, Σ_a
    (2R_a + 1)], laid out as sinusoid_pairs' rows, so that a linear map gives a learned
    vector per offset on each axis and E2 adds the axes' products."""
    dim, start, rows = sum(2 * r + 1 for r in radii), 0, []
    for nq, nk, step, q_step, r in zip(q_sizes, k_sizes, steps, q_steps or (1,) * len(radii),
                                       radii):
        delta = -_q_minus_k(nq, nk, step, like.device, None, q_step, k_origin)  # k − q
        delta = delta.reshape(-1, 1)
        hot = (delta == torch.arange(-r, r + 1, device=like.device)).to(like.dtype)
        rows.append(F.pad(hot, (start, dim - start - 2 * r - 1)))
        start += 2 * r + 1
    return torch.cat(rows)


def _split_pairs(table: torch.Tensor, q_sizes, k_sizes):
    """The rows of a per-axis pair table, axis by axis: [nq, nk, ...] each."""
    start = 0
    for nq, nk in zip(q_sizes, k_sizes):
        yield table[start:start + nq * nk].unflatten(0, (nq, nk))
        start += nq * nk


def _per_axis_sum(parts, q_sizes, k_sizes, lead: tuple = ()) -> torch.Tensor:
    """Σ_a part_a broadcast to [*lead, q_1..q_n, k_1..k_n] and flattened to [*lead, Q, K];
    part_a is [*lead, nq_a, nk_a] (axis a's pairs alone) or [*lead, q_1..q_n, nk_a] (every
    query against axis a's keys)."""
    n, first, total = len(q_sizes), len(lead), 0
    for a, part in enumerate(parts):
        every_query = part.dim() == first + n + 1
        queries = q_sizes if every_query else (s if b == a else 1 for b, s in enumerate(q_sizes))
        keys = (s if b == a else 1 for b, s in enumerate(k_sizes))
        total = total + part.reshape(*lead, *queries, *keys)
    return total.flatten(first + n).flatten(first, first + n - 1)


def relative_logits(q: torch.Tensor, table: torch.Tensor, q_sizes, k_sizes) -> torch.Tensor:
    """E2: q [B, M, Q, d] against the projected encodings table [pairs, G·d] (G = M, the
    `kv` heads, or 1, each shared by M / G query heads):
    [B, M, Q, K] = Σ_a q · P_a(q_a − k_a), one small product per axis."""
    grid = q.unflatten(2, tuple(q_sizes))
    return _axis_products(grid, _split_pairs(table, q_sizes, k_sizes), q_sizes, k_sizes)


def _axis_products(grid: torch.Tensor, tables, q_sizes, k_sizes) -> torch.Tensor:
    """Σ_a q · P_a for queries on a grid, grid [B, M, (W,) q_1..q_n, d] (W: the halo
    kernel's blocks), and one table per axis, [nq_a, nk_a, G·d] (key k of query q on axis
    a) → [B, M, (W,) Q, K]."""
    n, d, m = len(q_sizes), grid.shape[-1], grid.shape[1]
    outer = "bmw"[:grid.dim() - n - 1]  # einsum letters of the axes before the grid
    letters = "xyz"[:n]
    parts = []
    for a, table in enumerate(tables):
        # one table for every head has no head axis to batch over, so the einsum reads
        # the grid as it is along the last axis (HaloNet: one copy of the queries fewer
        # kept for the backward); else [nq, nk, M, d]
        shared = table.shape[-1] == d
        heads = "" if shared else "m"
        table = table if shared else _per_query_head(table.unflatten(-1, (-1, d)), m)
        e = torch.einsum(f"{outer}{letters}d,{letters[a]}k{heads}d->{outer}{letters}k", grid,
                         table)
        # einsum leaves its result permuted; a small copy here lets the sum below write
        # the logits contiguously, with no copy of them to flatten
        parts.append(e.contiguous())
    return _per_axis_sum(parts, q_sizes, k_sizes, grid.shape[:len(outer)])


def _per_query_head(table: torch.Tensor, m: int) -> torch.Tensor:
    """[..., G, d] → [..., M, d]: each of G heads repeated for the M / G query heads that
    share it (a position table is small; the logits are not repeated)."""
    g = table.shape[-2]
    return table if g == m else table.repeat_interleave(m // g, dim=-2)


def offset_vectors(q: torch.Tensor, table: torch.Tensor, q_sizes, k_sizes, steps, radii
                   ) -> torch.Tensor:
    """E2 on a learned table per joint offset: q [B, M, Q, d], table [rows, G·d] (one row
    per offset within the radii, row-major as `offsets`) → [B, M, Q, K], q · T[k − q]
    within the radii and 0 beyond. Each query meets every row once ([B, M, Q, rows]) and
    reads its keys' offsets from that (the pairs are never given a vector each)."""
    return offset_maps(offset_vectors_local(q, table), q_sizes, k_sizes, steps, radii)


def offset_vectors_local(q: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """q [B, M, Q, d] against a learned vector per offset, table [P, G·d]: [B, M, Q, P],
    one logit per offset (E2 on `offsets(R) >> linear`, read in a query's window)."""
    m, d = q.shape[1], q.shape[-1]
    rows = _per_query_head(table.unflatten(-1, (-1, d)), m)  # [P, M, d]: G = width / d
    return torch.einsum("bmqd,pmd->bmqp", q, rows)


def own_storage(part: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """part, a slice of a larger tensor, copied when its product with factor will keep
    it for the backward (factor needs a gradient): the kept view would keep the whole
    larger tensor alive (S2's third of its first linear's output, unstacked: saved 1.40 →
    1.00 of the hand-written module, whose stack made that copy)."""
    return part.clone() if factor.requires_grad else part


def values_by_weights(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_k v[b, m, :, k] · weights[b, m, q, k] → [B, M, d, Q]: values channels-first [B, M
    or 1, d, K], weights [B, M, Q, K]. As v @ weightsᵀ, which writes the output in its
    layout for the layer after it; but when the weights need a gradient and are the larger
    (K > d), as (weights @ vᵀ)ᵀ and a copy of that output: the backward then gives the
    weights' gradient laid out as they are, and a softmax's backward makes no contiguous
    copy of it (at 8×256×28×28, one [B, M, Q, K] tensor fewer at the peak of the forward
    and backward: non-local 98 → 79 MB, and 2–4% faster)."""
    if weights.requires_grad and weights.shape[-1] > v.shape[-2]:
        return torch.matmul(weights, v.transpose(-1, -2)).transpose(-1, -2).contiguous()
    return torch.matmul(v, weights.transpose(-1, -2))


def offset_vectors_window(q: torch.Tensor, table: torch.Tensor, v: torch.Tensor, grid,
                          radii) -> torch.Tensor:
    """window_aggregate of E2 on a learned table per offset (offset_vectors_local's
    logits), except where a window covers the map and the table gathered for every (query,
    key) pair is smaller than the batch's logits of every offset: then each pair gets its
    offset's vector first, and a query meets only the keys there are (the lambda layer's
    23 × 23 scope on a 14 × 14 map: 196 products a query, not 529, and no [B, M, Q, 529]
    logits to keep for the backward)."""
    if not pairs_first(q.shape[0], q.shape[1], v.shape[-1], table.shape[-1], radii):
        return window_aggregate(offset_vectors_local(q, table), v, grid, radii)
    m, d = q.shape[1], q.shape[-1]
    index, inside = offset_index(grid, grid, (1,) * len(radii), radii, q.device)
    pairs = table.unflatten(-1, (-1, d))[index] * inside[..., None, None].to(table.dtype)
    g = pairs.shape[-2]  # [Q, K, G, d]: heads m·G/M .. share group g's vectors
    logits = torch.einsum("bghqd,qkgd->bghqk", q.unflatten(1, (g, m // g)), pairs)
    return _dense_aggregate(logits.flatten(1, 2), v)


def pairs_first(batch: int, heads: int, keys: int, width: int, radii) -> bool:
    """Whether offset_vectors_window gathers the table per pair: the window covers the map
    and Q·K·width (the gathered table; Q = K) < B·M·Q·P (every offset's logits)."""
    points = _product(2 * r + 1 for r in radii)
    return points >= keys and keys * width < batch * heads * points


def _dense_aggregate(dense: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """dense [B, M, Q, K] weights against v [B, G, d, K]; head m reads value head
    m // (M / G) → [B, M, d, Q]."""
    g, m = v.shape[1], dense.shape[1]
    y = torch.einsum("bghqk,bgdk->bghdq", dense.unflatten(1, (g, m // g)), v)
    return y.flatten(1, 2)


def window_aggregate(weights: torch.Tensor, v: torch.Tensor, grid, radii) -> torch.Tensor:
    """y[b, m, :, q] = Σ_p weights[b, m, q, p] · v[b, g(m), :, q + p]: weights [B or 1, M,
    Q or 1, P], one per joint offset p within the radii (row-major, as `offsets`); values
    v [B, G, d, N] on the grid, zero beyond it; head m reads value head m // (M / G).
    → [B, M, d, N]. A window as large as the map is read as a dense [Q, K] weight instead
    (the lambda layer's 23 × 23 scope on a 14 × 14 map: fewer products that way)."""
    b, g, d, n = v.shape
    if weights.shape[1] == 1:  # one weight for every head (E4 of width 1)
        weights = weights.expand(-1, g, -1, -1)
    m = weights.shape[1]
    if _product(2 * r + 1 for r in radii) >= n:
        steps = (1,) * len(radii)
        dense = offset_maps(weights.expand(-1, -1, n, -1), grid, grid, steps, radii)
        return _dense_aggregate(dense, v)
    kernel = [2 * r + 1 for r in radii] + [1] * (2 - len(radii))  # F.unfold's two axes
    maps = v.reshape(b, g * d, *grid, *[1] * (2 - len(grid)))
    if m == g and weights.shape[0] == weights.shape[2] == 1:
        # the same weights at every query: a depth-wise convolution, each head's kernel on
        # its d channels (cross-correlation reads offset i − r at kernel index i)
        taps = weights[0, :, 0].repeat_interleave(d, dim=0).reshape(g * d, 1, *kernel)
        y = F.conv2d(maps, taps, padding=[*radii, 0][:2], groups=g * d)
        return y.reshape(b, g, d, n)
    x = F.unfold(maps, kernel, padding=[*radii, 0][:2]).view(b, g, d, -1, n)  # [.., P, N]
    w = weights.transpose(-1, -2)  # [B, M, P, Q]
    if m == g:  # one weight per value channel and offset: a product summed over the
        # window, as a convolution's unfold would be (a batched matmul of 1-row matrices
        # is slower on CPUs)
        return (w.unsqueeze(2) * x).sum(3)
    y = torch.einsum("bghpq,bgdpq->bghdq", w.unflatten(1, (g, m // g)), x)
    return y.flatten(1, 2)


def relative_bias(table: torch.Tensor, q_sizes, k_sizes) -> torch.Tensor:
    """E4: one score per head and offset, table [pairs, M] → [1, M, Q, K]."""
    parts = [p.permute(2, 0, 1) for p in _split_pairs(table, q_sizes, k_sizes)]  # [M, nq, nk]
    return _per_axis_sum(parts, q_sizes, k_sizes, lead=(table.shape[-1],)).unsqueeze(0)


def one_hot_rows(like: torch.Tensor, size: int) -> torch.Tensor:
    """`offsets(R)`'s encoding: row i is the one-hot of offset i, in `like`'s dtype."""
    return torch.eye(size, dtype=like.dtype, device=like.device)


def causal_pool(keys: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """y_t = Σ_{s ≤ t} softmax_{s ≤ t}(K)_s v_s: keys [B, M, N], values v [B, M, N, d] →
    [B, M, N, d] (AFT-simple's causal form). The positions go in chunks of c: within a
    chunk a [c, c] lower-triangular weight, before it the earlier chunks' sums. Every
    exponent is taken from the running maximum of the keys up to the query (as a softmax
    of the query's own keys would), so each term is at most 1 and the denominator at
    least 1: no overflow, and no 0 / 0 however far apart the keys are."""
    n = keys.shape[-1]
    if n == 0:  # no positions: no outputs
        return v
    c = min(chunk, n)
    if n % c:  # keys of −inf and values 0 after the end: they weigh nothing
        keys = F.pad(keys, (0, c - n % c), value=float("-inf"))
        v = F.pad(v, (0, 0, 0, c - n % c))
    k = keys.unflatten(-1, (-1, c))  # [B, M, nc, c]
    vc = v.unflatten(-2, (-1, c))  # [B, M, nc, c, d]
    top = k.amax(-1)  # each chunk's maximum (a chunk holds at least one real key)
    before = torch.cat([torch.full_like(top[..., :1], float("-inf")), top[..., :-1]],
                       -1).cummax(-1).values  # the maximum of the earlier chunks: P_j
    ref = torch.maximum(before.unsqueeze(-1), k.cummax(-1).values)  # up to each query
    upto = torch.ones(c, c, dtype=torch.bool, device=k.device).tril()
    w = torch.where(upto, k.unsqueeze(-2) - ref.unsqueeze(-1), float("-inf")).exp()
    e = (k - top.unsqueeze(-1)).exp()  # each chunk's terms against its own maximum
    earlier = torch.ones(top.shape[-1], top.shape[-1], dtype=torch.bool,
                         device=k.device).tril(-1)
    rescale = torch.where(earlier, top.unsqueeze(-2) - before.unsqueeze(-1),
                          float("-inf")).exp()  # chunk i's sums at chunk j's P_j, i < j
    carried = rescale @ (e.unsqueeze(-2) @ vc).squeeze(-2)  # [B, M, nc, d]
    carried_sum = rescale @ e.sum(-1, keepdim=True)  # [B, M, nc, 1]
    back = (before.unsqueeze(-1) - ref).exp().unsqueeze(-1)  # P_j to each query's maximum
    numerator = w @ vc + back * carried.unsqueeze(-2)
    denominator = w.sum(-1, keepdim=True) + back * carried_sum.unsqueeze(-2)
    return (numerator / denominator).flatten(2, 3)[:, :, :n]  # [B, M, N, d]


def factorised_softmax(keys: torch.Tensor, table: torch.Tensor, v: torch.Tensor, grid,
                       radii) -> torch.Tensor:
    """Σ_k softmax_k(K_k + w_{k−q}) v_k with w [P, M] zero beyond the radii: keys
    [B, M, N], values v [B, M, d, N] → [B, M, d, N], as global sums plus local windows of
    e^K ⊙ v with kernel e^w − 1 (AFT-conv, Zhai et al. 2021, Eq. 6)."""
    e = (keys - keys.amax(-1, keepdim=True)).exp()  # [B, M, N]
    weighted = e.unsqueeze(2) * v  # [B, M, d, N]
    kernel = (table.exp() - 1).t()[None, :, None, :]  # [1, M, 1, P]
    numerator = weighted.sum(-1, keepdim=True) + window_aggregate(kernel, weighted, grid, radii)
    denominator = e.sum(-1, keepdim=True).unsqueeze(2) + \
        window_aggregate(kernel, e.unsqueeze(2), grid, radii)
    return numerator / denominator


def displacement_rows(like: torch.Tensor, radii, sizes: bool = False) -> torch.Tensor:
    """`displacement(R)`'s encoding: one row per joint offset k − q within the radii, in
    `offsets`' order (row-major, each axis from −R to R), holding q − k (the query's
    offset from the key, R_{q−k}), one number per axis, in `like`'s dtype. With `sizes`,
    `radii` are the queries' sizes n, each radius n − 1 (`displacement()`)."""
    if sizes:
        radii = [n - 1 for n in radii]
    axes = [torch.arange(r, -r - 1, -1, dtype=like.dtype, device=like.device) for r in radii]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).flatten(0, -2)


def offset_index(q_sizes, k_sizes, steps, radii, device, k_origin: int = 0):
    """For every (query, key) pair, the row of the key's offset k − q in a table of the
    joint offsets within `radii` (row-major, each axis from −R to R: a kernel's positions
    in torch's order), and whether it is within them: two [Q, K] tensors. `radii` None:
    n − 1 on an axis of n queries (`displacement()`)."""
    if radii is None:
        radii = [nq - 1 for nq in q_sizes]
    index, inside, n = 0, True, len(q_sizes)
    for a, (nq, nk, step, r) in enumerate(zip(q_sizes, k_sizes, steps, radii)):
        delta = -_q_minus_k(nq, nk, step, device, k_origin=k_origin)  # the key, from the query
        shape = [*(nq if b == a else 1 for b in range(n)), *(nk if b == a else 1 for b in range(n))]
        index = index * (2 * r + 1) + (delta + r).reshape(shape)
        inside = inside & (delta.abs() <= r).reshape(shape)
    index = torch.where(inside, index, 0).flatten(n).flatten(0, n - 1)
    return index, inside.flatten(n).flatten(0, n - 1)


def offset_bias(table: torch.Tensor, q_sizes, k_sizes, steps, radii, k_origin: int = 0
                ) -> torch.Tensor:
    """E4 on `offsets(R)`: table [rows, M], one row per joint offset → [1, M, Q, K]; pairs
    farther apart than the radii get 0. Key j sits at j·step + k_origin."""
    return _looked_up(table, *offset_index(q_sizes, k_sizes, steps, radii, table.device,
                                           k_origin))


def _looked_up(table: torch.Tensor, index: torch.Tensor, inside: torch.Tensor):
    """Row index[q, k] of table [rows, M] for every pair inside, 0 outside: [1, M, Q, K],
    contiguous (a zero row appended for the pairs outside: no mask to multiply)."""
    padded = torch.cat([table, table.new_zeros(1, table.shape[1])]).t()  # [M, rows + 1]
    rows = torch.where(inside, index, table.shape[0])
    return padded[:, rows].unsqueeze(0)


def offset_maps(maps: torch.Tensor, q_sizes, k_sizes, steps, radii,
                key_side: bool = False) -> torch.Tensor:
    """E2 on `offsets(R)`: maps [B, M, N, rows] give, at each position, one logit per joint
    offset (PSANet's over-complete maps). Query side: logit(q, k) = maps[q, row of k − q];
    key side (`E2(key = ...)`): logit(q, k) = maps[k, row of q − k]. Pairs farther apart
    than the radii get 0. → [B, M, Q, K]."""
    if key_side:
        return offset_maps(maps, k_sizes, q_sizes, steps, radii).transpose(-1, -2)
    # (maps expanded over the queries, window_aggregate's weights, would be materialised)
    if maps.requires_grad and maps.stride(2) != 0 and _covered(q_sizes, k_sizes, steps, radii):
        return _offset_rows(maps, q_sizes, k_sizes, steps, radii)
    index, inside = offset_index(q_sizes, k_sizes, steps, radii, maps.device)
    b, m = maps.shape[:2]
    logits = maps.gather(-1, index.expand(b, m, *index.shape))
    return logits * inside.to(maps.dtype)


def _covered(q_sizes, k_sizes, steps, radii) -> bool:
    """Whether every key's offset from every query is within the radii."""
    return all(r >= nq - 1 and r >= (nk - 1) * step
               for nq, nk, step, r in zip(q_sizes, k_sizes, steps, radii))


def _offset_rows(maps: torch.Tensor, q_sizes, k_sizes, steps, radii) -> torch.Tensor:
    """offset_maps where every pair is within the radii, for maps that need a gradient:
    the row of pair (q, k) is linear in q and k, so all the logits are one strided view of
    the maps (made row-major), copied out. Its backward keeps nothing, where gather's
    keeps the maps (PSANet's two [B, N, (2H − 1)(2W − 1)] maps: saved 1.19 → 0.89 of
    the hand-written module; the same fwd+bwd time, the forward ~0.5 ms slower a map)."""
    maps = maps.contiguous()
    q_strides, k_strides, offset = [], [], 0
    q_block, row_block = maps.stride(2), maps.stride(3)  # one query, one row further on
    for nq, step, r in reversed(list(zip(q_sizes, steps, radii))):
        q_strides.insert(0, q_block - row_block)  # the next query, its row of k − q
        k_strides.insert(0, step * row_block)
        offset += r * row_block  # offset k − q = 0 is row r on this axis
        q_block, row_block = q_block * nq, row_block * (2 * r + 1)
    # from the offset on, as_strided reading the view's own start (dynamo cannot trace a
    # storage_offset() call)
    view = maps.view(-1)[offset:].as_strided((*maps.shape[:2], *q_sizes, *k_sizes),
                                             (*maps.stride()[:2], *q_strides, *k_strides))
    return view.reshape(*maps.shape[:2], math.prod(q_sizes), math.prod(k_sizes))


def take(t: torch.Tensor, dim: int, index: int, axis: str) -> torch.Tensor:
    """`take(t, axis, i)` on an axis sized at run time: t.select, the index checked."""
    _has_index(t.shape[dim], index, axis)
    return t.select(dim, index)


def take_part(parts: tuple, index: int, axis: str) -> torch.Tensor:
    """One of an unbind's parts (several takes of one axis sized at run time)."""
    _has_index(len(parts), index, axis)
    return parts[index]


def _has_index(size: int, index: int, axis: str) -> None:
    if not -size <= index < size:
        raise InputShapeError(f"take {index} of axis {axis}, which has {size} "
                              f"{'index' if size == 1 else 'indices'} here: the input's sizes "
                              f"do not fit the spec")


def absolute_maps(maps: torch.Tensor, k_sizes, longest: int) -> torch.Tensor:
    """E2 on `absolute(T)`: maps [B, M, Q, T] give each query one logit per key index;
    the keys beyond T get 0 (Luong's location score, W_a h_t) → [B, M, Q, K]."""
    (nk,) = k_sizes
    if nk <= longest:
        return maps[..., :nk]
    return F.pad(maps, (0, nk - longest))


def bilinear_weights(delta: torch.Tensor, q_sizes, k_sizes, steps, radii, dilation: int = 1,
                     q_steps=None) -> torch.Tensor:
    """Deformable sampling as attention weights [B, M, Q, K]: head m (a kernel position p_m,
    row-major from −R to R, d apart; with M a multiple of the kernel's size, heads m and
    m + size share a position: groups) of query q samples at q + p_m + δ, δ =
    delta[:, m, q] (one number per axis), and key k gets the bilinear kernel
    Π_a max(0, 1 − |k_a − that_a|): the four keys around the point share it, keys outside
    the map get nothing. Queries every s-th position sit at s·q."""
    b, m, _, n = delta.shape
    kernel = torch.arange(m, device=delta.device)
    weights, inner = 1, _product([2 * r + 1 for r in radii])
    q_steps = q_steps or (1,) * len(radii)
    for a, (nk, step, radius) in enumerate(zip(k_sizes, steps, radii)):
        side = 2 * radius + 1
        inner //= side
        p = ((kernel // inner) % side - radius) * dilation  # [M]: the kernel offset per head
        grid = [torch.arange(s, device=delta.device) * t for s, t in zip(q_sizes, q_steps)]
        q = torch.meshgrid(*grid, indexing="ij")[a].flatten()  # [Q]: this axis's coordinate
        point = (q[None, :] + p[:, None]).to(delta.dtype) + delta[..., a]  # [B, M, Q]
        k = torch.arange(nk, device=delta.device, dtype=delta.dtype) * step
        g = (1 - (k - point[..., None]).abs()).clamp(min=0)  # [B, M, Q, nk]
        shape = [b, m, g.shape[2], *(nk if c == a else 1 for c in range(len(k_sizes)))]
        weights = weights * g.reshape(shape)
    return weights.flatten(3)


def pair_bias(table: torch.Tensor, q_sizes, k_sizes, longest: int,
              within: int | None) -> torch.Tensor:
    """E4 on `pairs(T)`: table [T·T, M], one row per absolute (query, key) pair of the
    first T positions → [1, M, Q, K]; pairs beyond T, or farther apart than `within`,
    get 0 (AFT-local)."""
    (nq,), (nk,) = q_sizes, k_sizes
    q = torch.arange(nq, device=table.device)[:, None]
    k = torch.arange(nk, device=table.device)[None, :]
    inside = (q < longest) & (k < longest)
    if within is not None:
        inside = inside & ((q - k).abs() <= within)
    return _looked_up(table, torch.where(inside, q * longest + k, 0), inside)


def patches(x: torch.Tensor, dims: tuple[int, ...], kernel: int, stride: int,
            padding: int, padding_mode: str = "zeros") -> torch.Tensor:
    """The kernel^n windows of x along one or two `dims`, every stride-th: a new axis of
    the window's positions (row-major, F.unfold's order) before the first of them, the
    dims becoming the windows' grid. F.unfold on [B, rest, dims] (its backward is ~5×
    faster on CPUs than that of Tensor.unfold's views); a border other than zeros is
    padded by F.pad first (`padding_mode` as nn.Conv2d's). Along one axis, Tensor.unfold's
    view instead: F.unfold's im2col of a column of width 1 is ~3× slower forward and ~2×
    backward (MUSE's 15-tap windows on 16 × 256 × 256)."""
    if len(dims) == 1 and padding_mode == "zeros":
        d = dims[0]
        if padding:  # F.pad lists the last axis first
            x = F.pad(x, (0, 0) * (x.dim() - 1 - d) + (padding, padding))
        return x.unfold(d, kernel, stride).movedim(-1, d)
    rest = [d for d in range(1, x.dim()) if d not in dims]
    moved = x.permute(0, *rest, *dims)
    lead, grid = moved.shape[:len(rest) + 1], moved.shape[len(rest) + 1:]
    flat = moved.reshape(lead[0], -1, *grid, *[1] * (2 - len(dims)))  # F.unfold's two axes
    out = [(n + 2 * padding - kernel) // stride + 1 for n in grid]
    # a line is a column of width 1: no window, padding or stride across it
    size, pad, step = ((kernel, 1), (padding, 0), (stride, 1)) if len(dims) == 1 else \
        ((kernel,) * 2, (padding,) * 2, (stride,) * 2)
    if padding_mode != "zeros" and padding:  # F.pad lists the last axis first
        flat = F.pad(flat, (pad[1], pad[1], pad[0], pad[0]), mode=padding_mode)
        pad = (0, 0)
    cols = F.unfold(flat, size, padding=pad, stride=step)
    y = cols.reshape(*lead, kernel ** len(dims), *out)  # [B, rest..., K, grid...]
    order = [0, *rest, "K", *dims]  # y's axes, by the input dim they came from
    target = [a for d in range(x.dim()) for a in (("K", d) if d == min(dims) else (d,))]
    return y.permute(*(order.index(a) for a in target))


def fold(x: torch.Tensor, window: int, dims: tuple[int, ...], sizes, kernel: int,
         stride: int, padding: int) -> torch.Tensor:
    """Undoes `patches` by summing (F.fold): x's window axis (kernel^n positions) and grid
    `dims` → a map of `sizes` on those dims, each window's values added at their
    positions; the window axis is gone, the other axes keep their order."""
    n = len(dims)
    rest = [d for d in range(x.dim()) if d != window and d not in dims]
    y = x.permute(*rest, window, *dims)
    lead = y.shape[:len(rest)]
    y = y.reshape(lead[0], -1, math.prod(y.shape[-n:]))  # [B, C·K, L], F.fold's layout
    if n == 1:  # a column of width 1 for F.fold's two axes
        out = F.fold(y, (sizes[0], 1), (kernel, 1), padding=(padding, 0), stride=(stride, 1))
        out = out.squeeze(-1)
    else:
        out = F.fold(y, tuple(sizes), kernel, padding=padding, stride=stride)
    out = out.reshape(*lead, *sizes)
    current = rest + list(dims)  # the input's dims in the result's order
    target = [d for d in range(x.dim()) if d != window]
    return out.permute(*(current.index(d) for d in target))


def rfft(x: torch.Tensor, dims: tuple[int, ...], frequencies: int, axis: str) -> torch.Tensor:
    """The orthonormal real FFT over `dims`, when the spec fixes the number of frequencies
    of the last: an error naming that axis when its size gives another number."""
    n = x.shape[dims[-1]]
    if n // 2 + 1 != frequencies:
        raise InputShapeError(f"axis {axis} (dim {dims[-1]}) has size {n}, which gives "
                              f"{n // 2 + 1} frequencies, expected {frequencies}: its size "
                              f"must be {2 * frequencies - 2} or {2 * frequencies - 1}")
    return torch.fft.rfftn(x, dim=dims, norm="ortho")


def coords(x: torch.Tensor, dims: tuple[int, ...], corners: bool) -> torch.Tensor:
    """[1, len(dims), grid...]: each position's coordinate along each of x's `dims` (in the
    order given), normalised to [-1, 1], the grid's axes in x's order. `corners`: the first
    and last positions at ∓1 (torch.linspace(-1, 1, n), grid_sample's align_corners);
    otherwise the map's edges at ∓1 and the positions at their pixels' centres."""
    grid = sorted(dims)
    lines = [_normalised_line(x.shape[d], corners, x) for d in grid]
    mesh = torch.meshgrid(*lines, indexing="ij")
    return torch.stack([mesh[grid.index(d)] for d in dims]).unsqueeze(0)


def _normalised_line(n: int, corners: bool, like: torch.Tensor) -> torch.Tensor:
    if corners:
        return torch.linspace(-1.0, 1.0, n, dtype=like.dtype, device=like.device)
    centres = torch.linspace(0.5, n - 0.5, n, dtype=like.dtype, device=like.device)
    return centres / n * 2 - 1


def sample(t: torch.Tensor, grid: torch.Tensor, t_order, grid_order, counts, corners: bool,
           mode: str, out_order) -> torch.Tensor:
    """t read at the grid's points (F.grid_sample, zeros outside the map). t permuted by
    `t_order` is [shared, features, space] and the grid by `grid_order` [shared, points,
    coordinates] (counts: how many axes each group has; coordinates in the order of the
    space axes); the result [shared, features, points] is permuted by `out_order`."""
    n_shared, n_features, n_points = counts
    t, grid = t.permute(t_order), grid.permute(grid_order)
    shared = torch.broadcast_shapes(t.shape[:n_shared], grid.shape[:n_shared])
    t = t.expand(*shared, *t.shape[n_shared:])
    grid = grid.expand(*shared, *grid.shape[n_shared:])
    features = t.shape[n_shared:n_shared + n_features]
    points = grid.shape[n_shared:n_shared + n_points]
    space = t.shape[n_shared + n_features:]
    maps = t.reshape(-1, math.prod(features), *space)
    where = grid.reshape(maps.shape[0], -1, 1, len(space))
    if len(space) == 1:  # a line is a map of width 1, read at x = 0
        maps, where = maps.unsqueeze(-1), torch.cat([torch.zeros_like(where), where], -1)
    else:  # grid_sample takes (x, y): the last axis first
        where = where.flip(-1)
    y = F.grid_sample(maps, where, mode=mode, padding_mode="zeros", align_corners=corners)
    return y.reshape(*shared, *features, *points).permute(out_order)
