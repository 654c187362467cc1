"""Speed of each compiled shipped spec against its hand-written reference module.

Method
------
For every case in CASES, the spec is compiled with attnspec.load, given seeded random
weights (tests/weights.py randomize_), and the reference module from tests/reference
receives the same weights (copy_weights). Before anything is timed, float64 copies of the
two modules are compared: outputs in eval and train mode and, in train mode, the gradients
w.r.t. the input and every parameter too; a mismatch is reported and that case is not
timed (exit code 2). In float64, because float32 cannot compare two codes everywhere: at
an element where a leaky ReLU's input sits at 1e-7 (ocnet's fusion at 8x256x28x28, one
thread), rounding alone flips its slope from 1 to 0.01 in one module, and the input
gradient moves by 0.3.

Two statements are timed per module:
- fwd:     eval mode, under torch.no_grad(): m(x)
- fwd+bwd: train mode: torch.autograd.grad(m(x), [x, *params], g) with a fixed random
           output gradient g (autograd.grad, so no .grad accumulation is timed), with
           allow_unused: a parameter may get no gradient (emanet's first convolution feeds
           only its no-grad EM steps, as in the authors' code); the check then requires
           None from both modules.
Timing uses torch.utils.benchmark.Timer.timeit. After a warm-up, each statement is timed
in ROUNDS rounds; every round times the compiled and the reference module back to back,
alternating which goes first, so machine drift (other load, clock changes) hits both
equally. A round runs the statement `number` times, `number` chosen so a round takes at
least BLOCK_SECONDS. The reported time is the median over rounds of the per-call time; the
ratio is compiled / hand-written (> 1 means the compiled module is slower).

glibc malloc hands big blocks back to the kernel when they are freed (munmap, or a heap
trim), so the next call page-faults them in again, and how often that happens depends on
the exact order of allocations, not on the code: measured here, one module paid ~9k page
faults a call more than the other for the same kernels (eca fwd+bwd 0.6x). steady_malloc()
therefore turns off glibc's use of mmap and heap trimming, so freed memory stays in the
process, as with a caching allocator. --system-malloc leaves glibc alone.

With --memory, nothing is timed: each module's memory is read from the CPU allocator's
record of every allocation and free (torch.profiler, profile_memory), one call after a
warm-up, nothing sampled (oneDNN's own caches can move a row by a fraction of a MB
between runs): the peak of the eval forward; what a train-mode forward leaves allocated
(its output and the tensors autograd saves for the backward: the activation memory of
training); and the peak of the forward and backward. Memory that existed before the call
(input, weights) is not counted. The last also depends on the order in which autograd
runs the backward's nodes (which follows the order the forward created them), so two
modules saving the same tensors can differ there by a gradient buffer.

The thread count is fixed (torch.set_num_threads, default 1, see --threads) and printed.
Exit code: 0; 1 if any ratio exceeds --max-ratio (1.05) unless --no-fail; 2 on a mismatch.

    python benchmarks/bench_specs.py [--quick] [--memory] [--only NAME ...] [--no-fail]
                                     [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.benchmark import Timer

_ROOT = Path(__file__).resolve().parents[1]
for _p in (str(_ROOT), str(_ROOT / "tests")):  # attnspec itself; reference/ and weights.py
    if _p not in sys.path:
        sys.path.insert(0, _p)

from reference import REFERENCES  # noqa: E402
from weights import copy_weights, randomize_  # noqa: E402

import attnspec  # noqa: E402


@dataclass(frozen=True)
class Case:
    spec: str  # attnspec.load name, key of REFERENCES
    params: dict  # constructor arguments, shared by both modules
    shape: tuple  # input shape for the full run
    quick: tuple  # input shape for --quick
    variant: str = ""  # tells cases of one spec apart: row name "spec/variant"
    definition: str = ""  # a definition of the file other than its main one
    glob: int = 0  # > 0: the first `glob` tokens of every sequence are global (Longformer)

    @property
    def name(self) -> str:
        """The row name, --only NAME and QUICK_PARAMS key: the spec, "/variant" if given."""
        return f"{self.spec}/{self.variant}" if self.variant else self.spec


# Realistic sizes (ResNet stage-2/3 maps, ViT-like sequences) that, on one thread of the
# 2-core dev machine, take ~5-100 ms a forward and ~25-450 ms a forward + backward (sanet,
# mobilevit_attn and ACmix's 7 × 7 windows up to ~0.8 s / 2.6 s); the full run takes ~40
# minutes, `--only NAME` one row.
CASES = [
    Case("se", dict(C=256), (16, 256, 56, 56), (2, 256, 8, 8)),
    Case("effective_se", dict(C=256), (16, 256, 56, 56), (2, 256, 8, 8)),
    # Gather-Excite's parameter-free GE-θ⁻: the global extent, and extent 4 (a strided
    # average pool, upsampled back)
    Case("gather_excite", dict(), (16, 256, 56, 56), (2, 256, 8, 8)),
    Case("gather_excite", dict(extent=4), (16, 256, 56, 56), (2, 256, 8, 8), "e4"),
    # GE-θ⁺ in ResNet-50's third stage (C = 1024 on 14 × 14; the gather a depth-wise conv
    # as wide as the map)
    Case("gather_excite", dict(C=1024, H=14, W=14), (16, 1024, 14, 14), (2, 64, 14, 14),
         "theta_plus", definition="GatherExciteThetaPlus"),
    Case("eca", dict(C=256), (16, 256, 56, 56), (2, 256, 8, 8)),
    # ECA-NS: a kernel per channel (the authors' unfold + grouped Conv1d)
    Case("eca", dict(C=256, shared=False), (16, 256, 56, 56), (2, 256, 8, 8), "ns"),
    Case("cbam", dict(C=256), (32, 256, 28, 28), (2, 256, 8, 8)),
    Case("gcnet", dict(C=256), (32, 256, 28, 28), (2, 256, 8, 8)),
    Case("nonlocal", dict(C=256), (8, 256, 28, 28), (2, 64, 6, 6)),
    # the authors' spacetime block on 8 frames of res4's 14 × 14 (C = 512 here), and within
    # groups of 4 frames (their add_nonlocal_group)
    Case("nonlocal", dict(C=512), (2, 512, 8, 14, 14), (2, 64, 8, 6, 6), "3d",
         definition="NonLocal3D"),
    Case("nonlocal", dict(C=512, group_size=4), (2, 512, 8, 14, 14), (2, 64, 8, 6, 6),
         "3d_groups", definition="NonLocal3D"),
    Case("mhsa", dict(D=256, M=8), (8, 256, 256), (2, 16, 64)),
    Case("external", dict(D=256, S=64), (16, 1024, 256), (2, 16, 64)),
    Case("danet", dict(C=256), (8, 256, 28, 28), (2, 64, 6, 6)),
    Case("ccnet", dict(C=256), (8, 256, 28, 28), (2, 64, 6, 6)),
    # its 3-D form (the authors' CrissCrossAttention3D) on 8 frames of 28 × 28
    Case("ccnet", dict(C=256), (2, 256, 28, 28, 8), (2, 64, 4, 5, 3), "3d",
         definition="CrissCross3D"),
    Case("ocnet", dict(C=256, drop=0.0), (8, 256, 28, 28), (2, 64, 6, 6)),
    Case("sge", dict(C=256), (16, 256, 56, 56), (2, 64, 8, 8)),
    Case("aft", dict(D=256), (16, 256, 256), (2, 16, 64)),
    Case("attention_pool", dict(D=256), (64, 128, 256), (2, 16, 64)),
    # sk: SKNet-50's second stage (256 channels on 28 × 28, G = 32); checked in float64 (its
    # squeeze's train-mode BatchNorm over 16 pooled vectors magnifies float32 rounding ~30×)
    Case("sk", dict(C=256), (16, 256, 28, 28), (2, 64, 8, 8)),
    Case("shuffle", dict(C=256), (16, 256, 56, 56), (2, 128, 8, 8)),
    Case("sanet", dict(C=256), (16, 256, 28, 28), (2, 16, 8, 8)),
    Case("bam", dict(C=256), (16, 256, 56, 56), (2, 64, 8, 8)),
    Case("generalized", dict(C=256), (8, 256, 28, 28), (2, 64, 6, 6)),
    # mmcv's q_stride 2: the queries every other position, the result resized back
    Case("generalized", dict(C=256, q_stride=2), (8, 256, 28, 28), (2, 64, 6, 6), "qstride2"),
    Case("a2", dict(C=256), (16, 256, 28, 28), (2, 64, 6, 6)),
    # muse: the authors' 16 heads and kernels 3 and 15; without the weight dropout (the
    # authors' 0.1), whose masks the two modules would draw in different states of the RNG
    Case("muse", dict(D=256, weight_dropout=0.0), (16, 256, 256), (2, 16, 64)),
    # emanet: checked in float64 (in float32 one output before the final ReLU sits at 3.6e-7
    # in one module and 0 in the other: a kink rounding crosses)
    Case("emanet", dict(C=256), (8, 256, 28, 28), (2, 64, 6, 6)),
    # psanet: shrink 2 (default) needs H - 1 and W - 1 even; the attention runs on 14 x 14
    Case("psanet", dict(C=256, mask_h=27, mask_w=27), (8, 256, 27, 27), (2, 64, 9, 9)),
    # AFT-full and AFT-local: both modules hold a [B, N, N, D]-sized exp table (the
    # compiled one [B, D, N, N]), so the sequence is shorter than AFT-simple's.
    Case("aft", dict(D=256, variant="full", T=128), (2, 128, 256), (2, 16, 64), "full"),
    Case("aft", dict(D=256, variant="local", T=128, s=32), (2, 128, 256), (2, 16, 64),
         "local"),
    # causal AFT-simple: the reference holds a [B, N, N, D] exp table, the compiled module
    # running sums over chunks of 64 positions
    Case("aft", dict(D=256, causal=True), (4, 256, 256), (2, 16, 64), "causal"),
    Case("triplet", dict(), (16, 256, 28, 28), (2, 64, 8, 8)),
    Case("simam", dict(), (16, 256, 28, 28), (2, 64, 8, 8)),
    # a long sequence: the keys are summed into a d × d state, time linear in N
    Case("linear_attention", dict(D=256, M=8), (8, 2048, 256), (2, 16, 64)),
    # causal: the reference's cumulative sums of every position's k vᵀ ([B, N, M, d, d'])
    # against the running sums over chunks
    Case("linear_attention", dict(D=256, M=8, causal=True), (8, 1024, 256), (2, 16, 64),
         "causal"),
    Case("epsa", dict(C=256), (8, 256, 28, 28), (2, 64, 8, 8)),
    Case("polarized", dict(C=256), (16, 256, 28, 28), (2, 64, 8, 8)),
    Case("polarized", dict(C=256, layout="sequential"), (16, 256, 28, 28), (2, 64, 8, 8),
         "sequential"),
    Case("parnet", dict(C=256), (16, 256, 56, 56), (2, 64, 8, 8)),
    Case("coord", dict(C=256), (16, 256, 56, 56), (2, 64, 8, 8)),
    Case("residual_attention", dict(input_dim=2048, num_classes=80), (16, 2048, 14, 14),
         (2, 64, 7, 7)),
    Case("coatnet", dict(C=256), (8, 256, 14, 14), (2, 64, 7, 7)),
    Case("separable_sa", dict(d=256), (16, 256, 4, 256), (2, 64, 4, 16)),
    Case("alibi", dict(D=256, M=8), (8, 512, 256), (2, 16, 64)),
    Case("simplified_sa", dict(D=256, M=8, dropout=0.0), (8, 512, 256), (2, 16, 64)),
    Case("sliding_window", dict(D=256, M=8, attention_window=64), (8, 512, 256),
         (2, 16, 64)),
    # a longer sequence (2048 tokens, windows of 256): the band of query blocks
    Case("sliding_window", dict(D=256, M=8, attention_window=256), (1, 2048, 256),
         (1, 64, 64), "long"),
    # the dilation on 2 of the 8 heads (the paper's character models): two bands
    Case("sliding_window", dict(D=256, M=8, attention_window=64, attention_dilation=2,
                                dilated_heads=2), (8, 512, 256), (2, 16, 64), "dilated_heads"),
    # Longformer with 16 global tokens (a question's, as in its QA fine-tuning): both
    # branches run for every row, where the authors gather the global rows
    Case("sliding_window", dict(D=256, M=8, attention_window=64), (8, 512, 256),
         (2, 16, 64), "global", definition="Longformer", glob=16),
    Case("emsa", dict(C=256, M=8, sr_ratio=2), (8, 28, 28, 256), (2, 8, 8, 64)),
    Case("axial", dict(D=256, M=8), (8, 32, 32, 256), (2, 8, 8, 64)),
    Case("mobilevit_attn", dict(in_channels=128, transformer_dim=144, ffn_dim=288,
                                head_dim=36), (16, 128, 32, 32), (2, 32, 8, 8)),
    Case("vip", dict(dim=256, segment_dim=16), (16, 16, 16, 256), (2, 8, 8, 64)),
    Case("crossformer", dict(dim=256), (8, 28, 28, 256), (2, 8, 8, 64)),
    Case("crossformer", dict(dim=256, lsda_flag=1), (8, 28, 28, 256), (2, 8, 8, 64), "lda"),
    # the authors' backbone block on a map no group size divides (padded, masked, cropped)
    Case("crossformer", dict(dim=256), (4, 25, 38, 256), (2, 9, 10, 64), "backbone",
         definition="CrossFormerBackboneBlock"),
    Case("crossformer", dict(dim=256, lsda_flag=1, interval=4), (4, 25, 38, 256),
         (2, 9, 10, 64), "backbone_lda", definition="CrossFormerBackboneBlock"),
    Case("lambda_layer", dict(C=256), (8, 256, 14, 14), (2, 64, 7, 7)),
    # HaloNet's layer at its defaults (blocks of 8, haloes of 3, 8 heads) on a 32 × 32 map
    # of 256 channels; the window's positions beyond the map attended as zeros, or left out
    Case("halo", dict(C=256), (8, 256, 32, 32), (2, 64, 16, 16)),
    Case("halo", dict(C=256, edge="mask"), (8, 256, 32, 32), (2, 64, 16, 16), "mask"),
    # intra-depth |u| = 4, in the lambdas' form (tensor operators, the lambda convolution
    # per value depth)
    Case("lambda_layer", dict(C=256, u=4), (8, 256, 14, 14), (2, 64, 7, 7), "u4",
         definition="LambdaIntraDepth"),
    # VOLO-D1's outlook stage (dim 192, 6 heads, stride 2 on 28 × 28); GFNet's 14 × 14 map
    Case("outlook", dict(dim=192, num_heads=6, stride=2), (16, 28, 28, 192), (2, 8, 8, 64)),
    Case("gfnet", dict(dim=384), (32, 14, 14, 384), (2, 8, 8, 64)),
    # ACmix in ACmix-ResNet-50's stage 2 (the bottleneck's width 128 on 28 × 28, 4 heads,
    # the 7 × 7 window), at stride 1 and as the stage's first block (stride 2 on 56 × 56)
    Case("acmix", dict(in_planes=128, out_planes=128), (16, 128, 28, 28), (2, 32, 8, 8)),
    Case("acmix", dict(in_planes=128, out_planes=128, stride=2), (16, 128, 56, 56),
         (2, 32, 8, 8), "stride2"),
    # ACmix-Swin-T's third stage (W-MSA): 384 channels, 12 heads, 7 × 7 windows on 14 × 14
    Case("acmix", dict(dim=384, window_size=7, num_heads=12), (16, 14, 14, 384), (2, 8, 8, 64),
         "swin", definition="WindowAttentionACmix"),
    # its SW-MSA blocks (the cyclic shift by 3): in that stage, and in the first (96
    # channels, 3 heads, 64 windows on 56 × 56)
    Case("acmix", dict(dim=384, window_size=7, num_heads=12, shift_size=3), (16, 14, 14, 384),
         (2, 8, 8, 64), "swin_shifted", definition="WindowAttentionACmix"),
    Case("acmix", dict(dim=96, window_size=7, num_heads=3, shift_size=3), (8, 56, 56, 96),
         (2, 8, 8, 64), "swin_shifted_stage1", definition="WindowAttentionACmix"),
    # DAT-T's third stage (14 × 14 tokens, 12 heads of 32 channels in 3 groups, a 5 × 5
    # offset kernel, the sampled relative position bias)
    Case("dat", dict(q_h=14, q_w=14, n_heads=12), (16, 384, 14, 14), (2, 64, 6, 6)),
    # AFT-conv-32-7 on DeiT-tiny's 14 × 14 tokens: softmax(E3 + a local E4) lowers to the
    # paper's factorisation, e^K ⊙ V summed globally plus a depth-wise conv with kernel
    # e^w − 1 (passes.fuse_factorised), as the reference computes it
    Case("aft", dict(D=192, h=32, s=7), (16, 14, 14, 192), (2, 6, 6, 64), "conv",
         definition="AFTConv"),
    # s2: its split attention sums (not averages) over the positions: float32 gradients of
    # ~3e3, hence the check in float64
    Case("s2", dict(channels=256), (16, 14, 14, 256), (2, 6, 6, 64)),
    # cot and conv_as_attention: their weights (E2 / E4 on offsets, unnormalised, on a
    # window) lower to each query's window of values (passes.fuse_local), no longer a
    # dense [M, HW, HW] table. cot's train-mode BatchNorms leave float32 gradients ~1e-2
    # apart (each module as far from float64): checked in float64.
    Case("cot", dict(dim=256), (8, 256, 28, 28), (2, 64, 8, 8)),
    # conv_as_attention's reference is F.conv2d itself: fwd 1.5, fwd+bwd 1.5 — its M = k²
    # stacked value projections are the formulation's cost, not the compiler's.
    # deformable is not timed: its bilinear weights are a dense [M, HW, HW] table (a
    # demonstration that the mechanism is expressible), far slower than the sampling
    # convolution it stands for, so a ratio would say nothing about the compiler.
]
# Quick shapes use narrower modules where the channel width is part of the shape.
QUICK_PARAMS = {"nonlocal": dict(C=64), "nonlocal/3d": dict(C=64),
                "nonlocal/3d_groups": dict(C=64, group_size=4), "mhsa": dict(D=64, M=8),
                "external": dict(D=64, S=16),
                "danet": dict(C=64), "ccnet": dict(C=64), "ccnet/3d": dict(C=64),
                "ocnet": dict(C=64, drop=0.0),
                "sge": dict(C=64, G=8), "aft": dict(D=64), "attention_pool": dict(D=64),
                "sk": dict(C=64), "s2": dict(channels=64), "cot": dict(dim=64),
                "shuffle": dict(C=128), "sanet": dict(C=16),
                "bam": dict(C=64), "generalized": dict(C=64),
                "generalized/qstride2": dict(C=64, q_stride=2), "a2": dict(C=64),
                "muse": dict(D=64, weight_dropout=0.0), "emanet": dict(C=64, K=16),
                "psanet": dict(C=64, mask_h=9, mask_w=9),
                "aft/full": dict(D=64, variant="full", T=16),
                "aft/local": dict(D=64, variant="local", T=16, s=4),
                "aft/causal": dict(D=64, causal=True),
                "gather_excite/theta_plus": dict(C=64, H=14, W=14),
                "linear_attention": dict(D=64, M=8), "epsa": dict(C=64),
                "linear_attention/causal": dict(D=64, M=8, causal=True),
                "polarized": dict(C=64), "polarized/sequential": dict(C=64, layout="sequential"),
                "parnet": dict(C=64), "coord": dict(C=64),
                "residual_attention": dict(input_dim=64, num_classes=10),
                "coatnet": dict(C=64), "separable_sa": dict(d=64), "alibi": dict(D=64, M=8),
                "simplified_sa": dict(D=64, M=8, dropout=0.0),
                "sliding_window": dict(D=64, M=8, attention_window=4),
                "sliding_window/global": dict(D=64, M=8, attention_window=4),
                "sliding_window/dilated_heads": dict(D=64, M=8, attention_window=4,
                                                     attention_dilation=2, dilated_heads=2),
                "sliding_window/long": dict(D=64, M=8, attention_window=8),
                "emsa": dict(C=64, M=8, sr_ratio=2), "axial": dict(D=64, M=8),
                "mobilevit_attn": dict(in_channels=32, transformer_dim=64, ffn_dim=128,
                                       head_dim=16),
                "vip": dict(dim=64, segment_dim=8),
                "halo": dict(C=64), "halo/mask": dict(C=64, edge="mask"),
                "crossformer": dict(dim=64, group_size=4),
                "crossformer/lda": dict(dim=64, group_size=4, lsda_flag=1),
                "crossformer/backbone": dict(dim=64, group_size=4),
                "crossformer/backbone_lda": dict(dim=64, group_size=4, lsda_flag=1,
                                                 interval=4),
                "lambda_layer": dict(C=64, r=5),
                "lambda_layer/u4": dict(C=64, u=4, r=5),
                "outlook": dict(dim=64, num_heads=2, stride=2),
                "gfnet": dict(dim=64, h=8, w=5), "aft/conv": dict(D=64, h=8, s=3),
                "acmix": dict(in_planes=32, out_planes=32),
                "acmix/stride2": dict(in_planes=32, out_planes=32, stride=2),
                "acmix/swin": dict(dim=64, window_size=4, num_heads=2),
                "acmix/swin_shifted": dict(dim=64, window_size=4, num_heads=2, shift_size=2),
                "acmix/swin_shifted_stage1": dict(dim=64, window_size=4, num_heads=2,
                                                  shift_size=2),
                "dat": dict(q_h=6, q_w=6, n_heads=2, n_groups=1)}

INPUT_SCALE = 0.5  # as tests/test_equivalence.py: keeps softmaxes unsaturated
# The check's tolerances, in float64 (tests/test_equivalence.py asks 1e-10 on small shapes;
# these sum far more terms). atol is scaled by the largest magnitude among the compared
# reference tensors: some gradients are sums of big terms that cancel (phi's bias gradient
# is exactly 0 under a softmax), so their error follows the terms, not the result.
RTOL, ATOL = 1e-9, 1e-9
ROUNDS, QUICK_ROUNDS = 15, 3
BLOCK_SECONDS, QUICK_BLOCK_SECONDS = 0.1, 0.005
WARMUP = 3  # untimed calls per statement before timing
SEED = 0


@dataclass
class Pair:
    compiled: torch.nn.Module
    reference: torch.nn.Module
    x: torch.Tensor  # requires grad
    g: torch.Tensor  # output gradient for the backward
    extra: dict  # other inputs, by name (global tokens)


def build(case: Case, quick: bool) -> Pair:
    """The compiled and reference modules with the same random weights, input and grad."""
    params = QUICK_PARAMS.get(case.name, case.params) if quick else case.params
    if case.definition:
        module = attnspec.compile_file(attnspec.api.spec_path(case.spec), case.definition,
                                       **params)
    else:
        module = attnspec.load(case.spec, **params)
    compiled = randomize_(module, SEED)
    reference = REFERENCES[f"{case.spec}.{case.definition}" if case.definition
                           else case.spec](**params)
    copy_weights(compiled, reference)
    gen = torch.Generator().manual_seed(SEED)
    shape = case.quick if quick else case.shape
    x = (INPUT_SCALE * torch.randn(shape, generator=gen)).requires_grad_(True)
    extra = {}
    if case.glob:
        extra["glob"] = torch.zeros(shape[:2], dtype=torch.bool)
        extra["glob"][:, :case.glob] = True
    with torch.no_grad():  # eval: a train-mode call would update only one BN's stats
        g = torch.randn(_main(reference.eval()(x, **extra)).shape, generator=gen)
    return Pair(compiled, reference, x, g, extra)


def steady_malloc() -> str:
    """Keep freed memory in the process (see the module docstring). Returns a description."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "system malloc (not glibc)"
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # from glibc's malloc.h
    ok = libc.mallopt(M_MMAP_MAX, 0) and libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    return "glibc malloc without mmap or trim" if ok else "system malloc"


def _main(out):
    """A module's output: the first, when it returns several (EMANet's y, then its μ,
    which has no gradient; tests/test_equivalence.py compares every one)."""
    return out[0] if isinstance(out, tuple) else out


def _inputs(module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [x, *(p for p in module.parameters() if p.requires_grad)]


def mismatch(pair: Pair) -> str | None:
    """None if float64 copies of both modules agree on outputs (eval, train) and train-mode
    gradients (the modules themselves stay as they are, BatchNorm statistics included)."""
    x = pair.x.detach().double().requires_grad_(True)
    extra = {k: v.double() if v.is_floating_point() else v for k, v in pair.extra.items()}
    results = []
    for module in (copy.deepcopy(pair.compiled).double(), copy.deepcopy(pair.reference).double()):
        module.eval()
        with torch.no_grad():
            out_eval = _main(module(x, **extra))
        module.train()
        out = _main(module(x, **extra))
        grads = torch.autograd.grad(out, _inputs(module, x), pair.g.double(), allow_unused=True)
        results.append([out_eval, out, *grads])
    names = ["eval output", "train output", "grad x"] + [
        f"grad {n}" for n, p in pair.reference.named_parameters() if p.requires_grad]
    atol = ATOL * max([1.0] + [t.abs().max().item() for t in results[1] if t is not None])
    for name, a, b in zip(names, *results):
        if a is None or b is None:  # a parameter the output does not depend on
            if (a is None) != (b is None):
                return f"{name} is {'None' if a is None else 'a tensor'} in the compiled module"
            continue
        if a.shape != b.shape and a.numel() == b.numel():
            a = a.reshape(b.shape)  # Linear vs 1x1 conv weights
        if a.shape != b.shape or not torch.allclose(a, b, rtol=RTOL, atol=atol):
            err = (a - b).abs().max().item() if a.shape == b.shape else "shape"
            return f"{name} differs (max abs err {err})"
    return None


def statements(module: torch.nn.Module, x: torch.Tensor, g: torch.Tensor,
               extra: dict) -> dict:
    """The timed callables: eval forward, and train forward + backward."""
    inputs = _inputs(module, x)

    def fwd():
        with torch.no_grad():
            module(x, **extra)

    def fwd_bwd():
        torch.autograd.grad(_main(module(x, **extra)), inputs, g, allow_unused=True)

    return {"fwd": (module.eval, fwd), "fwd+bwd": (module.train, fwd_bwd)}


def _calibrate(timers: list[Timer], block_seconds: float) -> int:
    """Calls per round so that one round of the slowest statement takes block_seconds."""
    for t in timers:  # warm-up: lazy init, and the heap growing to its high-water mark
        t.timeit(WARMUP)
    per_call = max(t.timeit(1).median for t in timers)
    return max(1, round(block_seconds / per_call))


def time_interleaved(fns: list, threads: int, rounds: int, block_seconds: float) -> list:
    """Median seconds per call of each fn, timed in alternating-order rounds."""
    timers = [Timer("fn()", globals={"fn": fn}, num_threads=threads) for fn in fns]
    number = _calibrate(timers, block_seconds)
    samples = [[] for _ in fns]
    for r in range(rounds):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        for i in order:
            samples[i].append(timers[i].timeit(number).median)
    return [statistics.median(s) for s in samples]


def bench(pair: Pair, threads: int, rounds: int, block_seconds: float) -> dict:
    """{"fwd": (compiled s, reference s), "fwd+bwd": (...)}."""
    c = statements(pair.compiled, pair.x, pair.g, pair.extra)
    r = statements(pair.reference, pair.x, pair.g, pair.extra)
    times = {}
    for kind in ("fwd", "fwd+bwd"):
        (set_c, fn_c), (set_r, fn_r) = c[kind], r[kind]
        set_c()
        set_r()
        times[kind] = tuple(time_interleaved([fn_c, fn_r], threads, rounds, block_seconds))
    return times


def allocated_bytes(fn) -> tuple[int, int]:
    """(peak, kept): the most bytes that tensors allocated while fn runs hold at once (its
    temporaries and result; in training also what autograd saves, and the gradients), and
    the bytes still held when it returns, its result alive. What existed before (the input,
    the weights) is not counted. Read from the CPU allocator's record of every allocation
    and free, which torch.profiler keeps with a timestamp (the kineto results, as torch's
    own memory profiler reads them): nothing is sampled."""
    fn()  # warm-up: lazily built buffers (position tables) are not a call's memory
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    held = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):  # stable: ties keep their order
        held += event.nbytes()
        peak = max(peak, held)
    return peak, held


def measure_memory(pair: Pair) -> dict:
    """{kind: (compiled bytes, reference bytes)} for the kinds of MEMORY_KINDS."""
    sides = []
    for module in (pair.compiled, pair.reference):
        timed = statements(module, pair.x, pair.g, pair.extra)
        module.eval()
        fwd = allocated_bytes(timed["fwd"][1])[0]
        module.train()
        saved = allocated_bytes(lambda m=module: m(pair.x, **pair.extra))[1]
        sides.append((fwd, saved, allocated_bytes(timed["fwd+bwd"][1])[0]))
    return dict(zip(MEMORY_KINDS, zip(*sides)))


# The columns of a table: what is measured, and its (unit, scale from seconds or bytes,
# digits). Memory: the peak of an eval forward; what a train-mode forward leaves allocated
# for the backward (its output and the tensors autograd saves); the peak of a forward and
# backward, which also depends on the order in which autograd runs the backward's nodes.
TIME_KINDS, MEMORY_KINDS = ("fwd", "fwd+bwd"), ("fwd", "saved", "fwd+bwd")
UNITS = {"time": ("ms", 1e3, 2), "memory": ("MB", 1e-6, 2)}


def header(measure: str) -> list[str]:
    unit = UNITS[measure][0]
    kinds = MEMORY_KINDS if measure == "memory" else TIME_KINDS
    return ["spec", "shape"] + [f"{kind} {unit} {who}" if who else "ratio" for kind in kinds
                                for who in ("compiled", "hand-written", "")]


def row(spec: str, shape: tuple, values: dict, measure: str = "time") -> list[str]:
    """A table row; values: {kind: (compiled, reference)} in seconds or bytes."""
    _, scale, digits = UNITS[measure]
    cells = [spec, "x".join(map(str, shape))]
    for comp, ref in values.values():
        cells += [f"{comp * scale:.{digits}f}", f"{ref * scale:.{digits}f}",
                  f"{comp / ref:.3f}" if ref else "-"]
    return cells


def print_table(rows: list[list[str]], measure: str = "time") -> None:
    head = header(measure)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, ["-" * w for w in widths], *rows]:
        print("  ".join(c.rjust(w) if i > 1 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes, few rounds")
    ap.add_argument("--only", action="append", metavar="NAME",
                    choices=[c.name for c in CASES], help="bench only NAME (repeatable)")
    ap.add_argument("--no-fail", action="store_true", help="report slow ratios, exit 0")
    ap.add_argument("--max-ratio", type=float, default=1.05)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--system-malloc", action="store_true",
                    help="do not tune glibc malloc (see the docstring)")
    ap.add_argument("--rounds", type=int, help="timing rounds per statement")
    ap.add_argument("--memory", action="store_true",
                    help="measure peak memory instead of time (one call per statement)")
    return ap.parse_args(argv)


def _rounds(args: argparse.Namespace) -> int:
    return args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)


def run(cases: list[Case], args: argparse.Namespace) -> tuple[list, list, list]:
    """Check and time (or measure the memory of) each case: (table rows, (spec, kind,
    ratio) list, mismatched specs)."""
    rounds = _rounds(args)
    block = QUICK_BLOCK_SECONDS if args.quick else BLOCK_SECONDS
    measure = "memory" if args.memory else "time"
    rows, ratios, failed = [], [], []
    for case in cases:
        pair = build(case, args.quick)
        problem = mismatch(pair)
        if problem:
            failed.append(case.name)
            print(f"{case.name}: MISMATCH, not measured: {problem}", file=sys.stderr)
            continue
        values = (measure_memory(pair) if args.memory
                  else bench(pair, args.threads, rounds, block))
        rows.append(row(case.name, tuple(pair.x.shape), values, measure))
        ratios += [(case.name, kind, c / r) for kind, (c, r) in values.items() if r]
    return rows, ratios, failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = [c for c in CASES if not args.only or c.name in args.only]
    malloc = "system malloc" if args.system_malloc else steady_malloc()
    saved_threads, start = torch.get_num_threads(), time.perf_counter()
    torch.set_num_threads(args.threads)
    try:
        how = ("memory of one call, from the allocator's record" if args.memory
               else f"{_rounds(args)} interleaved rounds, median")
        print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {malloc}, "
              f"{how}; ratio = compiled / hand-written")
        rows, ratios, failed = run(cases, args)
    finally:
        torch.set_num_threads(saved_threads)
    print_table(rows, "memory" if args.memory else "time")
    print(f"({time.perf_counter() - start:.0f} s)")
    slow = [f"{s} {k} {q:.3f}" for s, k, q in ratios if q > args.max_ratio]
    if slow:
        print(f"ratio > {args.max_ratio}: " + ", ".join(slow))
    if failed:
        return 2
    return 1 if slow and not args.no_fail else 0


if __name__ == "__main__":
    sys.exit(main())
