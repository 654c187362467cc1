"""Paper-faithful eager PyTorch reference modules, one per shipped spec.

Each module is written by hand from its paper (and the authors' official code where it
exists), registers its parameters and buffers in the order the compiled spec creates them,
and takes the same constructor arguments, with the same defaults, as its `.attn` file.
tests/test_equivalence.py checks every compiled spec against its reference.
"""

from .a2 import A2
from .acmix import ACmix, WindowAttentionACmix
from .aft import AFT, AFTConv
from .alibi import ALiBi
from .attention_pool import AttentionPool, Luong
from .axial import Axial, AxialTransformerBlock, Column, Row
from .bam import BAM
from .cbam import CBAM, ChannelGate, SpatialGate
from .ccnet import CCNet, CrissCross3D
from .coatnet import CoAtNet
from .conv_as_attention import ConvAsAttention
from .coord import CoordAtt
from .cot import CoT
from .crossformer import (
    LSDA,
    CrossFormerBackboneBlock,
    CrossFormerBlock,
    GroupAttention,
    LSDABackbone,
)
from .danet import ChannelAttention, DANet, PositionAttention
from .dat import DAttention
from .deformable import Deformable
from .eca import ECA
from .effective_se import EffectiveSE
from .emanet import EMANet
from .emsa import EMSA
from .epsa import EPSA
from .external import External, ExternalAttention, ExternalMultiHead
from .gather_excite import GatherExcite, GatherExciteTheta, GatherExciteThetaPlus
from .gcnet import GCNet
from .generalized import Generalized
from .gfnet import GFNetBlock, GFNetBlockLayerScale, GlobalFilter
from .halo import HaloAttention
from .lambda_layer import LambdaIntraDepth, LambdaLayer
from .linear_attention import LinearAttention
from .mhsa import MHSA, CrossAttention
from .mobilevit_attn import MobileViTAttn
from .muse import MUSE, MUSESeparable
from .nonlocal_block import NonLocal, NonLocal3D
from .ocnet import ASPOC, BaseOC, ObjectContext, PyramidOC
from .outlook import OutlookAttention, Outlooker
from .parnet import SSE
from .polarized import Polarized, PolarizedChannel, PolarizedSpatial
from .psanet import PSANet
from .residual_attention import CSRA, MHA
from .s2 import S2Attention
from .sanet import SqueezeAttention
from .se import SE
from .separable_sa import SeparableSA
from .sge import SGE
from .shuffle import ShuffleAttention
from .simam import SimAM
from .simplified_sa import SimplifiedSA
from .sk import SK
from .sliding_window import Longformer, SlidingWindow
from .triplet import TripletAttention
from .vip import WeightedPermuteMLP

# spec name (as given to attnspec.load) -> reference class
REFERENCES = {
    "se": SE,
    "eca": ECA,
    "mhsa": MHSA,
    "mhsa.CrossAttention": CrossAttention,
    "nonlocal": NonLocal,
    "nonlocal.NonLocal3D": NonLocal3D,
    "cbam": CBAM,
    "cbam.ChannelGate": ChannelGate,
    "cbam.SpatialGate": SpatialGate,
    "external": External,
    "gcnet": GCNet,
    "danet": DANet,
    "danet.PositionAttention": PositionAttention,
    "danet.ChannelAttention": ChannelAttention,
    "ccnet": CCNet,
    "ccnet.CrissCross3D": CrissCross3D,
    "aft": AFT,
    "attention_pool": AttentionPool,
    "ocnet": BaseOC,
    "sge": SGE,
    "sk": SK,
    "shuffle": ShuffleAttention,
    "sanet": SqueezeAttention,
    "bam": BAM,
    "gather_excite": GatherExcite,
    "gather_excite.GatherExciteTheta": GatherExciteTheta,
    "gather_excite.GatherExciteThetaPlus": GatherExciteThetaPlus,
    "generalized": Generalized,
    "conv_as_attention": ConvAsAttention,
    "deformable": Deformable,
    "a2": A2,
    "muse": MUSE,
    "muse.MUSESeparable": MUSESeparable,
    "psanet": PSANet,
    "emanet": EMANet,
    "external.ExternalMultiHead": ExternalMultiHead,
    "external.ExternalAttention": ExternalAttention,
    "attention_pool.Luong": Luong,
    "ocnet.PyramidOC": PyramidOC,
    "ocnet.ASPOC": ASPOC,
    "ocnet.ObjectContext": ObjectContext,
    "simam": SimAM,
    "triplet": TripletAttention,
    "effective_se": EffectiveSE,
    "linear_attention": LinearAttention,
    "epsa": EPSA,
    "polarized": Polarized,
    "polarized.PolarizedChannel": PolarizedChannel,
    "polarized.PolarizedSpatial": PolarizedSpatial,
    "parnet": SSE,
    "separable_sa": SeparableSA,
    "coatnet": CoAtNet,
    "halo": HaloAttention,
    "residual_attention": CSRA,
    "residual_attention.MHA": MHA,
    "coord": CoordAtt,
    "sliding_window": SlidingWindow,
    "sliding_window.Longformer": Longformer,
    "lambda_layer.LambdaIntraDepth": LambdaIntraDepth,
    "simplified_sa": SimplifiedSA,
    "emsa": EMSA,
    "alibi": ALiBi,
    "axial": Axial,
    "axial.Row": Row,
    "axial.Column": Column,
    "axial.AxialTransformerBlock": AxialTransformerBlock,
    "cot": CoT,
    "mobilevit_attn": MobileViTAttn,
    "vip": WeightedPermuteMLP,
    "s2": S2Attention,
    "lambda_layer": LambdaLayer,
    "crossformer": CrossFormerBlock,
    "crossformer.LSDA": LSDA,
    "crossformer.GroupAttention": GroupAttention,
    "crossformer.LSDABackbone": LSDABackbone,
    "crossformer.CrossFormerBackboneBlock": CrossFormerBackboneBlock,
    "outlook": OutlookAttention,
    "outlook.Outlooker": Outlooker,
    "gfnet": GlobalFilter,
    "gfnet.GFNetBlock": GFNetBlock,
    "gfnet.GFNetBlockLayerScale": GFNetBlockLayerScale,
    "aft.AFTConv": AFTConv,
    "acmix": ACmix,
    "acmix.WindowAttentionACmix": WindowAttentionACmix,
    "dat": DAttention,
}

__all__ = [
    "A2", "ACmix", "AFT", "AFTConv", "ALiBi", "ASPOC", "AttentionPool", "Axial",
    "AxialTransformerBlock", "BAM", "BaseOC", "CBAM", "CCNet", "ChannelAttention",
    "CrissCross3D",
    "ChannelGate", "CoAtNet", "Column", "ConvAsAttention", "CoordAtt", "CoT", "CrossAttention",
    "CrossFormerBackboneBlock", "CrossFormerBlock", "CSRA", "DANet", "DAttention",
    "Deformable", "ECA", "EffectiveSE", "EMANet", "EMSA", "EPSA", "External",
    "ExternalAttention", "ExternalMultiHead", "GatherExcite", "GatherExciteTheta", "GroupAttention",
    "GatherExciteThetaPlus", "GCNet", "Generalized", "GFNetBlock", "GFNetBlockLayerScale",
    "GlobalFilter", "HaloAttention", "LambdaIntraDepth", "LambdaLayer", "LinearAttention",
    "Longformer", "LSDA",
    "LSDABackbone", "Luong", "MHA", "MHSA", "MobileViTAttn", "MUSE", "MUSESeparable",
    "NonLocal", "NonLocal3D", "ObjectContext", "OutlookAttention", "Outlooker", "Polarized",
    "PolarizedChannel", "PolarizedSpatial", "PositionAttention", "PSANet", "PyramidOC", "Row",
    "S2Attention", "SE", "SeparableSA", "SGE", "ShuffleAttention", "SimAM", "SimplifiedSA",
    "SK", "SlidingWindow", "SpatialGate", "SqueezeAttention", "SSE", "TripletAttention",
    "WeightedPermuteMLP", "WindowAttentionACmix", "REFERENCES"
]
