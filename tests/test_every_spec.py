"""Checks every shipped spec must pass, with no test code per spec: the four checks of
CATALOGUE.md, torch.compile / torch.export / float64 gradcheck, and the IR's counts."""

from __future__ import annotations

import io
import math

import pytest
import torch
from counting import flops_both_ways  # tests/counting.py
from test_equivalence import _outputs  # a module's outputs as a tuple
from torch.func import functional_call, grad, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

import attnspec
from attnspec import count
from attnspec.api import spec_path
from attnspec.lower import lower

SPECS = attnspec.shipped()
# Every required int parameter (C, D) takes the smallest of these widths that the spec's
# defaults accept (SGE's 64 groups need C = 64): small keeps gradcheck fast.
WIDTHS = (16, 32, 64, 128)


# Specs whose required ints are not all widths: DAT's are the map's size and the head
# count (16 of each would be a 16 × 16 map of 512 channels, too big for gradcheck)
SMALL = {"dat": dict(q_h=5, q_w=4, n_heads=2, n_head_channels=4, n_groups=1)}


def build(name: str, **extra):
    ir = attnspec.build_ir(spec_path(name), **_params(name), **extra)
    return ir, lower(ir)


def _params(name: str) -> dict:
    if name in SMALL:
        return SMALL[name]
    program = attnspec.parse(spec_path(name))
    main = program.main_definition()
    required = [p.name for p in main.params if p.default is None and p.type.name == "int"]
    for width in WIDTHS:
        params = dict.fromkeys(required, width)
        try:
            attnspec.build_ir(program, **params)
            return params
        except attnspec.SpecError:
            continue
    raise AssertionError(f"{name} builds at none of the widths {WIDTHS}")


def sample(ir, batch: int, free: int, seed: int = 0) -> torch.Tensor:
    """An input of the spec's first input type; free axes get `free`, `free + 1`, ...,
    rounded up to a multiple of what the spec splits them by (MobileViT's patches)."""
    g = torch.Generator().manual_seed(seed)
    axes = ir.node(ir.inputs[0]).type.axes
    sizes, k = [batch], 0
    for a in axes[1:]:
        step = _split_by(ir).get(a.name, 1)
        size = a.size or _spectrum_of(ir).get(a.name) or -(-(free + k) // step) * step
        size = max(size, _reflected_by(ir).get(a.name, 0) + 1)
        sizes.append(size)
        k += a.size is None
    return torch.randn(*sizes, generator=g)


def _spectrum_of(ir) -> dict[str, int]:
    """Axis → the size whose rfft gives the fixed number of frequencies a filter has
    (GFNet's), 2·(F − 1)."""
    return {n.attrs["axes"][-1]: 2 * (n.attrs["as"][0][1] - 1) for n in ir.nodes()
            if n.op == "rfft" and n.attrs["as"][0][1] is not None}


def _reflected_by(ir) -> dict[str, int]:
    """Axis → the padding its windows reflect at the border (ACmix's), which it must
    exceed."""
    return {a: n.attrs["padding"] for n in ir.nodes() if n.op == "patches"
            and n.attrs["padding_mode"] == "reflect" for a in n.attrs["axes"]}


def _split_by(ir) -> dict[str, int]:
    """Axis → the product of the fixed sizes a `split` cuts it into."""
    return {n.attrs["axis"]: math.prod(s for _, s in n.attrs["sizes"] if s is not None)
            for n in ir.nodes() if n.op == "split"}


@pytest.fixture(params=SPECS)
def spec(request):
    torch.manual_seed(0)
    ir, module = build(request.param)
    return request.param, ir, module


def test_every_parameter_and_buffer_is_registered(spec):
    _, ir, m = spec
    for sub in m.modules():
        stray = [k for k, v in vars(sub).items() if isinstance(v, torch.Tensor)]
        assert not stray, f"tensors outside the state_dict: {stray}"
    m.to(torch.float64)
    for key, t in m.state_dict().items():
        if t.is_floating_point():
            assert t.dtype == torch.float64, key


def test_a_sample_alone_equals_it_inside_a_batch(spec):
    _, ir, m = spec
    m.eval()
    x = sample(ir, batch=4, free=5)
    with torch.no_grad():
        batched = _outputs(m(x))
        for i in range(4):
            alone = _outputs(m(x[i:i + 1]))
            for one, all_ in zip(alone, batched):
                torch.testing.assert_close(one, all_[i:i + 1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("free", [3, 6, 11])
def test_forward_works_at_several_sizes(spec, free):
    _, ir, m = spec
    x = sample(ir, batch=2, free=free)
    for y in _outputs(m(x)):
        assert torch.isfinite(y).all()
        assert y.shape[0] == 2


def test_forward_creates_and_replaces_no_parameter(spec):
    _, ir, m = spec
    before = {k: (id(p), p.data_ptr()) for k, p in m.named_parameters()}
    m.train()
    # the input needs a gradient too: a parameter-free spec (gather_excite) has nothing else
    sum(y.sum() for y in _outputs(m(sample(ir, batch=2, free=5).requires_grad_()))).backward()
    assert {k: (id(p), p.data_ptr()) for k, p in m.named_parameters()} == before


def test_every_reduction_names_its_axis(spec):
    _, ir, m = spec
    unnamed = [n.format_node() for n in m.graph.nodes
               if n.op == "call_function" and getattr(n.target, "__name__", "") in
               ("softmax", "sum", "mean", "amax", "amin", "max", "min", "log_softmax")
               and "dim" not in n.kwargs and len(n.args) < 2]
    unnamed += [n.format_node() for n in m.graph.nodes
                if n.op == "call_method" and n.target in ("softmax", "sum", "mean")
                and "dim" not in n.kwargs and len(n.args) < 2]
    assert not unnamed


def test_gradcheck_float64(spec):
    _, ir, m = spec
    m = m.double().eval()
    x = sample(ir, batch=2, free=3).double().requires_grad_()
    # `detach` (what the authors run under no_grad) makes autograd treat a value as a
    # constant: the numerical side holds it at its value at x too
    f = _constant_detached(m, x) if any(n.op == "detach" for n in ir.nodes()) else m
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-6)


class _Frozen(torch.fx.Interpreter):
    """Runs a compiled module with every `torch.detach` returning the value it had on the
    first run: the function whose derivative autograd computes."""

    def __init__(self, gm, values: dict):
        super().__init__(gm)
        self.values = values

    def run_node(self, n):
        if n.op == "call_function" and n.target is torch.detach:
            if n.name not in self.values:
                self.values[n.name] = super().run_node(n).clone()
            return self.values[n.name]
        return super().run_node(n)


def _constant_detached(m, x):
    values = {}
    with torch.no_grad():
        _Frozen(m, values).run(x)
    assert values, "no detach ran"
    return lambda t: _Frozen(m, values).run(t)


def test_torch_compile_fullgraph_matches_eager(spec):
    _, ir, m = spec
    m.eval()
    x = sample(ir, batch=2, free=5)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), m(x))


def test_torch_compile_with_dynamic_shapes_matches_eager(spec):
    # one compiled graph, sizes as symbols: two batches and two map sizes
    _, ir, m = spec
    m.eval()
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, dynamic=True, backend="eager")
    with torch.no_grad():
        for batch, free in ((2, 5), (3, 7)):
            x = sample(ir, batch=batch, free=free)
            torch.testing.assert_close(compiled(x), m(x))


def test_torch_compile_trains_like_eager(spec):
    # the training graph, forward and backward through AOTAutograd with the decompositions
    # and partitioner inductor uses: eager's outputs and gradients (in float64: a bias
    # before a BatchNorm has a gradient of 0, which float32 leaves at 1e-5 either way)
    _, ir, m = spec
    m.double().train()
    for layer in m.modules():  # the same numbers on both sides: nothing dropped at random
        if isinstance(layer, torch.nn.modules.dropout._DropoutNd):
            layer.p = 0.0
    x = sample(ir, batch=2, free=5).double().requires_grad_()
    wrt = [x, *m.parameters()]
    torch._dynamo.reset()
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager_decomp_partition")
    (y, grads), (y_eager, grads_eager) = [
        (y, torch.autograd.grad(y.square().sum(), wrt, allow_unused=True))
        for y in (_outputs(run(x))[0] for run in (compiled, m))]
    torch.testing.assert_close(y, y_eager, rtol=1e-10, atol=1e-10)
    for g, g_eager in zip(grads, grads_eager, strict=True):
        assert (g is None) == (g_eager is None)
        if g is not None:
            torch.testing.assert_close(g, g_eager, rtol=1e-9, atol=1e-10)


def test_torch_export_matches_eager(spec):
    _, ir, m = spec
    m.eval()
    x = sample(ir, batch=2, free=5)
    exported = torch.export.export(m, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), m(x))


def test_parameter_count_is_read_off_the_ir(spec):
    _, ir, m = spec
    assert sum(count.parameters(ir).values()) == sum(p.numel() for p in m.parameters())


def test_flops_match_torch_flop_counter(spec):
    _, ir, _ = spec
    ours, torchs = flops_both_ways(ir, sample(ir, batch=2, free=6))
    assert ours == torchs


def test_the_meta_device_gives_the_output_shapes(spec):
    # `attnspec compile` prints the output shapes of a copy built on the meta device
    _, ir, m = spec
    x = sample(ir, batch=2, free=5)
    with torch.no_grad():
        real = _outputs(m.eval()(x))
        with torch.device("meta"):
            meta = _outputs(lower(ir).eval()(torch.empty(x.shape)))
    assert [t.shape for t in meta] == [t.shape for t in real]
    assert all(t.is_meta for t in meta)


def test_a_pickled_module_loads_and_computes_the_same(spec):
    # torch.load of a whole module traces its code again (fx): attnspec.runtime's helpers
    # must stay calls, and buffers stay buffers
    _, ir, m = spec
    buffer = io.BytesIO()
    torch.save(m.eval(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded).__name__ == type(m).__name__
    assert list(loaded.state_dict()) == list(m.state_dict())
    x = sample(ir, batch=2, free=5)
    with torch.no_grad():
        for a, b in zip(_outputs(loaded(x)), _outputs(m(x)), strict=True):
            assert torch.equal(a, b)


def test_per_sample_gradients_with_torch_func(spec):
    # the torch.func recipe (vmap over grad of a functional call) gives each sample's
    # gradients, of the parameters and of the input, as a loop over the samples does
    _, ir, m = spec
    m.eval()
    params = {k: v.detach() for k, v in m.named_parameters()}
    buffers = dict(m.named_buffers())
    x = sample(ir, batch=2, free=5)

    def loss(p, one):
        y = functional_call(m, (p, buffers), (one.unsqueeze(0),))
        return _outputs(y)[0].square().sum()

    each = grad(loss, argnums=(0, 1))
    batched = vmap(each, in_dims=(None, 0))(params, x)
    for i in range(2):
        alone = each(params, x[i])
        torch.testing.assert_close(batched[1][i], alone[1], atol=1e-5, rtol=1e-4)
        for k in params:
            torch.testing.assert_close(batched[0][k][i], alone[0][k], atol=1e-5, rtol=1e-4)


def test_forward_mode_agrees_with_backward(spec):
    # torch.func.jvp (forward mode, as jacfwd and Hessians use it) gives J·v, backward
    # gives uᵀJ: their contractions uᵀ(J·v) and (uᵀJ)·v are one number, for tangents of
    # the input and of every parameter at once (float64)
    _, ir, m = spec
    m = m.double().eval()
    params = {k: v.detach() for k, v in m.named_parameters()}
    buffers = dict(m.named_buffers())
    x = sample(ir, batch=2, free=4).double()

    def f(p, t):
        return _outputs(functional_call(m, (p, buffers), (t,)))[0]

    g = torch.Generator().manual_seed(1)
    tangents = ({k: torch.randn(v.shape, generator=g, dtype=v.dtype)
                 for k, v in params.items()},
                torch.randn(x.shape, generator=g, dtype=x.dtype))
    if any(n.op == "sample" for n in ir.nodes()):  # torch has no forward derivative of
        # grid_sampler_2d (F.grid_sample)
        with pytest.raises(NotImplementedError, match="grid_sampler_2d"):
            torch.func.jvp(f, (params, x), tangents)
        return
    # nor of its fused CPU attention kernel: forward mode takes the math one
    with sdpa_kernel(SDPBackend.MATH):
        y, jv = torch.func.jvp(f, (params, x), tangents)
    u = torch.randn(y.shape, generator=g, dtype=y.dtype)
    ju_p, ju_x = torch.func.vjp(f, params, x)[1](u)
    backward = (ju_x * tangents[1]).sum() + sum((ju_p[k] * tangents[0][k]).sum()
                                                for k in params)
    torch.testing.assert_close((u * jv).sum(), backward, rtol=1e-9, atol=1e-9)


def test_a_wrong_input_names_the_axis(spec):
    _, ir, m = spec
    first = ir.node(ir.inputs[0]).type
    fixed = [i for i, a in enumerate(first.axes) if a.size is not None]
    x = sample(ir, batch=2, free=4)
    if fixed:  # a fixed axis of the wrong size is named
        shape = list(x.shape)
        shape[fixed[0]] += 1
        with pytest.raises(ValueError, match=f"axis {first.axes[fixed[0]].name}"):
            m(torch.randn(*shape))
    names = ", ".join(first.names)  # a missing axis: the message lists the declared axes
    with pytest.raises(ValueError, match=f"must have {len(first.axes)} axes \\[{names}\\]"):
        m(x[..., 0])
