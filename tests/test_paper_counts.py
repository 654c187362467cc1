"""Costs the papers of the shipped specs state, reproduced from the IR's counts.

Only what a paper says about the module itself is checked here. Parameter and FLOP tables
of whole networks (AFT's DeiT-style ImageNet models, its CIFAR10 and Enwik8 language
models) depend on layers outside the spec and are not reproduced.
"""

import sys
from pathlib import Path

import pytest

import attnspec
from attnspec import count
from attnspec.api import spec_path
from attnspec.passes import fuse

# tests/ holds helper modules (reference/) but is not a package.
_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from reference import AFT, AttentionPool, ShuffleAttention  # noqa: E402


def _params(name: str, **params) -> int:
    return sum(count.parameters(attnspec.build_ir(spec_path(name), **params)).values())


def _flops(name: str, T: int, **params) -> int:
    ir = attnspec.build_ir(spec_path(name), **params)
    return count.flops(ir, count.bindings_for(ir, (1, T, params["D"])))


@pytest.mark.parametrize("proj", [True, False])
@pytest.mark.parametrize("D", [64, 256])
def test_aft_simple_is_linear_in_the_sequence_length(D, proj):
    # AFT paper, complexity table: AFT-simple takes O(Td) time (and space), against
    # O(T^2 d) for dot-product attention. Per position: three (with W^O four) D x D
    # linear maps at 2 D^2 FLOPs each, and the product and sum that pool the values.
    linears = 4 if proj else 3
    for T in (16, 64, 256):
        assert _flops("aft", T, D=D, proj=proj) == T * (linears * 2 * D * D + 2 * D)
    # ...whereas MHA's logits and aggregation grow with T^2.
    assert _flops("mhsa", 512, D=D) > 2 * _flops("mhsa", 256, D=D)


@pytest.mark.parametrize("D", [64, 192])
def test_aft_has_the_parameters_of_the_mha_it_replaces(D):
    # AFT is "a plugin replacement of MHA": W^Q, W^K, W^V (and W^O with proj) of D x D,
    # the same four matrices as MHA; AFT-simple adds no position bias.
    assert _params("aft", D=D) == _params("mhsa", D=D) == 4 * D * (D + 1)
    assert _params("aft", D=D, proj=False) == 3 * D * (D + 1)
    assert sum(p.numel() for p in AFT(D).parameters()) == 4 * D * (D + 1)


def test_attention_pool_at_han_width():
    # HAN: annotations of 100 (a bidirectional GRU, 50 units each way) and a context vector
    # u_w of 100: W_w (100 x 100), b_w and u_w.
    expected = 100 * 100 + 100 + 100
    assert _params("attention_pool", D=100) == expected
    assert sum(p.numel() for p in AttentionPool(100).parameters()) == expected


@pytest.mark.parametrize("C, G", [(256, 64), (2048, 64), (64, 8)])
def test_sge_adds_two_parameters_per_group(C, G):
    # the paper's claim: SGE is "almost free" of parameters, a scale and shift per group
    ir = attnspec.build_ir(spec_path("sge"), C=C, G=G)
    assert sum(count.parameters(ir).values()) == 2 * G


@pytest.mark.parametrize("C, G", [(256, 64), (2048, 64), (64, 8)])
def test_shuffle_adds_three_parameters_per_channel_of_a_half(C, G):
    # SA-Net §3: per channel of a half (C / 2G of them), a scale and shift of the channel
    # gate (W1, b1) and of the spatial gate (W2, b2), and GroupNorm's own scale and shift
    # (the authors' sa_layer: cweight, cbias, sweight, sbias, gn.weight, gn.bias).
    ir = attnspec.build_ir(spec_path("shuffle"), C=C, G=G)
    assert sum(count.parameters(ir).values()) == 6 * C // (2 * G)
    assert sum(p.numel() for p in ShuffleAttention(C, G).parameters()) == 6 * C // (2 * G)


# ResNet-50's four stages: output channels and blocks per stage
RESNET50_STAGES = ((256, 3), (512, 4), (1024, 6), (2048, 3))


def test_se_adds_two_c_squared_over_r_weights_per_block():
    # SE-Net §4 (Eq. 5's count): the excitation's two FC layers hold 2·C²/r weights; with
    # their biases (the authors' Caffe layers have them) C/r + C more
    for C, _ in RESNET50_STAGES:
        assert _params("se", C=C) == 2 * C * C // 16 + C // 16 + C
        assert _params("se", C=C, bias=False) == 2 * C * C // 16


def test_shuffle_in_resnet50_has_708_parameters_not_the_abstracts_300():
    # SA-Net's abstract: "300 vs. 25.56M" parameters for SA in ResNet-50 (G = 64). Its own
    # §3 count, 3C / G per module (the authors' sa_layer has the same), gives 708 over the
    # 16 blocks: the abstract's figure cannot be reproduced (said in specs/shuffle.attn)
    added = sum(n * _params("shuffle", C=C) for C, n in RESNET50_STAGES)
    assert added == sum(n * 3 * C // 64 for C, n in RESNET50_STAGES) == 708


def test_se_resnet50_adds_about_two_and_a_half_million_parameters():
    # SE-Net §4: SE-ResNet-50 needs "~2.5 million additional parameters beyond the ~25
    # million" of ResNet-50 (Eq. 5 counts the FC weights, 2/r · Σ N_s C_s², 2.51M)
    weights = sum(n * _params("se", C=C, bias=False) for C, n in RESNET50_STAGES)
    assert weights == 2 * sum(n * C * C for C, n in RESNET50_STAGES) // 16
    total = sum(n * _params("se", C=C) for C, n in RESNET50_STAGES)
    assert round(weights / 1e6, 1) == round(total / 1e6, 1) == 2.5


def test_cbam_resnet50_adds_what_its_imagenet_table_says():
    # CBAM's ImageNet table: ResNet50 25.56M parameters, ResNet50 + CBAM 28.09M; one CBAM
    # (r = 16, k = 7, the spatial gate's BatchNorm) per bottleneck, on its C = 4·planes
    added = sum(n * _params("cbam", C=C) for C, n in RESNET50_STAGES)
    assert round(added / 1e6, 2) == round(28.09 - 25.56, 2)


def test_sknet50_adds_ten_percent_to_resnext50():
    # SK-Net §3.2: "SKNet-50 only leads to 10% increase in the number of parameters" over
    # ResNeXt-50 (the authors' table: 25.0M → 27.5M). Each SK unit replaces a ResNeXt
    # unit's 3×3 grouped convolution and its BatchNorm (widths 128 … 1024, 3, 4, 6, 3 units)
    units = ((128, 3), (256, 4), (512, 6), (1024, 3))
    added = sum(n * (_params("sk", C=C) - (9 * C * C // 32 + 2 * C)) for C, n in units)
    assert round(added / 1e6, 1) == round(27.5 - 25.0, 1)
    assert added / 25.0e6 == pytest.approx(0.10, abs=0.005)


def test_coordinate_attention_in_mobilenetv2_has_the_readmes_3_95m_parameters():
    # The authors' README: MobileNetV2-1.0 3.5M parameters, MobileNetV2 + CA 3.95M. Their
    # mbv2_ca.py puts one CoordAtt (reduction 32) after the depthwise convolution of every
    # inverted residual block with expansion 6, at its hidden width 6 · input channels
    blocks = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3),
              (6, 320, 1))  # t, c, n
    widths, channels = [], 32
    for t, c, n in blocks:
        widths += [t * channels] + [t * c] * (n - 1) if t == 6 else []
        channels = c
    added = sum(_params("coord", C=w) for w in widths)
    mobilenet_v2 = 3_504_872  # torchvision's mobilenet_v2(), the 3.5M
    assert round((mobilenet_v2 + added) / 1e6, 2) == 3.95


def test_eca_adds_80_parameters_to_resnet50_with_the_released_kernel_sizes():
    # ECA-Net Table 2: ResNet-50 + ECA has 80 more parameters than ResNet-50; the authors'
    # released model uses k = 3, 5, 5, 7 in the four stages (k parameters a block)
    kernels = (3, 5, 5, 7)
    total = sum(blocks * _params("eca", C=C, adaptive=False, kernel=k)
                for (C, blocks), k in zip(RESNET50_STAGES, kernels))
    assert total == 80


def test_eca_adaptive_kernel_sizes_follow_the_paper_formula():
    # §3.3: k = |log2(C)/γ + b/γ|_odd with γ = 2, b = 1
    for C, k in ((64, 3), (256, 5), (512, 5), (1024, 5), (2048, 7)):
        assert _params("eca", C=C) == k


def test_criss_cross_recurrence_saves_85_percent_of_the_non_local_flops():
    # CCNet's abstract: the recurrent criss-cross module (R = 2) "reduces FLOPs by about
    # 85%" against a non-local block with the same projections (here: R = 1 written densely,
    # every position attending to all); at the paper's 97×97 map of 512 channels
    from attnspec.passes import fuse

    def gflops(ir):
        return count.flops(ir, count.bindings_for(ir, (1, 512, 97, 97))) / 1e9

    recurrent = fuse(attnspec.build_ir(spec_path("ccnet"), C=512, R=2))
    non_local = attnspec.build_ir(spec_path("ccnet"), C=512, R=1)  # not fused: dense
    assert 1 - gflops(recurrent) / gflops(non_local) == pytest.approx(0.85, abs=0.01)


def test_emanet_bases_start_as_unit_vectors():
    # the authors' EMAU draws μ from N(0, 2/K) and L2-normalises it over C once
    bases = next(b for b in attnspec.load("emanet", C=64, K=16).buffers() if b.shape == (64, 16))
    assert bases.norm(dim=0) == pytest.approx([1.0] * 16, abs=1e-6)


def test_emanet_unit_costs_a_third_of_a_3x3_convolution():
    # The authors' README (XiaLiPKU/EMANet): "As for the EMA Module itself, its computation
    # is only 1/3 of a 3x3 conv's": EMAU(512, 64, 3) on 513 × 513 crops at output stride 8
    # (a 65 × 65 map) against a 3 × 3 convolution of the same width, 512 → 512
    # (their figure is rounded: the two 1×1 convolutions are 2/9 of it, the T E and M
    # steps 2T·K/9C = 1/12, the rebuild K/9C = 1/72, together 0.319)
    ir = attnspec.build_ir(spec_path("emanet"), C=512, K=64, T=3)
    ema = count.flops(fuse(ir), count.bindings_for(ir, (1, 512, 65, 65)))  # what runs
    conv3x3 = 2 * 9 * 512 * 512 * 65 * 65
    assert ema / conv3x3 == pytest.approx(2 / 9 + 1 / 12 + 1 / 72, rel=0.01)
    assert ema / conv3x3 == pytest.approx(1 / 3, abs=0.02)


@pytest.mark.parametrize("extent", [0, 2, 8])
def test_gather_excite_theta_minus_is_parameter_free(extent):
    # §3: GE-θ⁻, the pairing of a parameter-free gather (an average) and excite
    assert _params("gather_excite", extent=extent) == 0


def test_simam_is_parameter_free():
    # SimAM's title: "a simple, parameter-free attention module"
    assert _params("simam") == 0
    ir = attnspec.build_ir(spec_path("simam"))
    assert not ir.modules


@pytest.mark.parametrize("T", [16, 64])
def test_aft_full_adds_a_t_by_t_position_bias(T):
    # AFT §3.1: w ∈ R^{T×T}, learned pairwise position biases; AFT-local keeps the same
    # parameters and zeroes w outside the window (§3.2)
    simple = _params("aft", D=64)
    assert _params("aft", D=64, variant="full", T=T) == simple + T * T
    assert _params("aft", D=64, variant="local", T=T, s=4) == simple + T * T


@pytest.mark.parametrize("kernel, C, out", [(3, 64, 64), (5, 32, 48), (1, 16, 8)])
def test_conv_as_attention_has_the_convolutions_parameters(kernel, C, out):
    # Zhu et al. §3: a k×k convolution is the formulation with one head per kernel position
    # whose value map is the kernel's slice: k²·C·out weights, as nn.Conv2d without bias
    assert _params("conv_as_attention", C=C, out=out, kernel=kernel) == kernel ** 2 * C * out


@pytest.mark.parametrize("C, K", [(512, 64), (64, 16)])
def test_emanet_bases_are_not_learned_by_back_propagation(C, K):
    # EMANet §3.3: the bases are updated by a moving average, not back-propagation; the
    # unit's learned parameters are its two 1×1 convolutions (the first with a bias) and
    # the BatchNorm
    ir = attnspec.build_ir(spec_path("emanet"), C=C, K=K)
    assert _params("emanet", C=C, K=K) == (C * C + C) + C * C + 2 * C
    m = attnspec.load("emanet", C=C, K=K)
    assert any(b.shape == (C, K) for b in m.buffers())  # the bases: a buffer
    assert all(p.shape != (C, K) for p in m.parameters())
    assert ir.modules
