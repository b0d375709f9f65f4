"""Every optimizer optforge ships, one small file per family."""
from ._base import REGISTRY, CatalogueOptimizer
from .adagrad import Adagrad, adagrad
from .adam import Adam, adam
from .adamax import Adamax, adamax
from .adamw import AdamW, adamw
from .cautious import CAdamW, CLion, cadamw, clion
from .cocob import COCOB, cocob
from .exadam import EXAdam, exadam
from .ftrl import FTRL, ftrl
from .lion import Lion, lion
from .lion_kappa import (LionKappaClamp, LionKappaIdentity, LionKappaSign, lion_kappa_clamp,
                         lion_kappa_identity, lion_kappa_sign)
from .optimistic import OptimisticGD, optimistic_gd
from .proximal_sgd import (ProxSGDBox, ProxSGDL1, ProxSGDNonNeg, prox_sgd_box, prox_sgd_l1,
                           prox_sgd_nonneg)
from .random_scaled_sgdm import RandomScaledSGDM, random_scaled_sgdm
from .rmsprop import RMSprop, rmsprop
from .sgd import SGD, sgd
from .signum import Signum, signum
# reductions (norms over a tensor, its rows or the param group)
from .adagrad_norm import AdAdaGradNorm, AdagradNorm, adagrad_norm, norm_test_batch_size
from .adamp import AdamP, adamp
from .clipped_sgd import ClippedSGD, clipped_sgd
from .lamb import LAMB, lamb
from .lars import LARS, lars
from .lion_kappa_l2 import LionKappaL2, lion_kappa_l2
from .normalized_gd import BetaNormalizedGD, beta_normalized_gd
from .sgdp import SGDP, sgdp
# simplex, balls and games (reductions; nested ones run as successive reduce stages)
from .cauchy_schwarz import cs_binary, cs_one_sided_binary, cs_orthogonal, cs_ternary
from .exponentiated_gradient import ExponentiatedGradient, exponentiated_gradient
from .frank_wolfe import (FrankWolfeL1, FrankWolfeLinf, FrankWolfeLp, FrankWolfeSimplex,
                          frank_wolfe_l1, frank_wolfe_linf, frank_wolfe_lp, frank_wolfe_simplex)
from .ftrl_ball import FTRLLinfBall, FTRLLpBall, ftrl_linf_ball, ftrl_lp_ball
from .regret_matching import IREGPRMPlus, PRMPlus, RMPlus, ireg_prm_plus, prm_plus, rm_plus

__all__ = ["REGISTRY", "CatalogueOptimizer", "SGD", "Adam", "AdamW", "Adamax", "Adagrad",
           "RMSprop", "Lion", "Signum", "sgd", "adam", "adamw", "adamax", "adagrad", "rmsprop",
           "lion", "signum",
           "LionKappaSign", "LionKappaIdentity", "LionKappaClamp", "EXAdam", "ProxSGDL1",
           "ProxSGDBox", "ProxSGDNonNeg", "OptimisticGD", "FTRL", "COCOB", "lion_kappa_sign",
           "lion_kappa_identity", "lion_kappa_clamp", "exadam", "prox_sgd_l1", "prox_sgd_box",
           "prox_sgd_nonneg", "optimistic_gd", "ftrl", "cocob", "CAdamW", "CLion", "cadamw", "clion",
           "RandomScaledSGDM", "random_scaled_sgdm"]
__all__ += ["LAMB", "LARS", "AdamP", "SGDP", "AdagradNorm", "AdAdaGradNorm", "ClippedSGD",
            "BetaNormalizedGD", "LionKappaL2", "lamb", "lars", "adamp", "sgdp", "adagrad_norm",
            "norm_test_batch_size", "clipped_sgd", "beta_normalized_gd", "lion_kappa_l2"]
__all__ += ["RMPlus", "PRMPlus", "IREGPRMPlus", "ExponentiatedGradient", "FrankWolfeL1",
            "FrankWolfeLinf", "FrankWolfeLp", "FrankWolfeSimplex", "FTRLLpBall", "FTRLLinfBall",
            "rm_plus", "prm_plus", "ireg_prm_plus", "exponentiated_gradient", "frank_wolfe_l1",
            "frank_wolfe_linf", "frank_wolfe_lp", "frank_wolfe_simplex", "ftrl_lp_ball",
            "ftrl_linf_ball", "cs_binary", "cs_ternary", "cs_one_sided_binary", "cs_orthogonal"]

# matrix stages (issue 6); the K-FAC family, natural gradient and MKOR read layer
# statistics (optimizer.attach(model))
from .adafisher import AdaFisher, AdaFisherW, adafisher, adafisherw  # noqa: E402
from .ekfac import EKFAC, ekfac  # noqa: E402
from .kfac import KFAC, kfac  # noqa: E402
from .mkor import MKOR, MKORH, mkor, mkor_h  # noqa: E402
from .muon import Muon, muon  # noqa: E402
from .natural_gradient import NaturalGradient, natural_gradient  # noqa: E402
from .scaled_gd import ScaledGD, scaled_gd  # noqa: E402
from .shampoo import Shampoo, shampoo  # noqa: E402
from .soap import SOAP, soap  # noqa: E402

__all__ += ["Muon", "muon", "Shampoo", "shampoo", "SOAP", "soap", "ScaledGD", "scaled_gd",
            "KFAC", "kfac", "EKFAC", "ekfac", "NaturalGradient", "natural_gradient", "MKOR",
            "MKORH", "mkor", "mkor_h", "AdaFisher", "AdaFisherW", "adafisher", "adafisherw"]

# extra inputs (given): Hutchinson probes, the gradient at the previous iterate, a
# distillation gradient (issue 7)
from .adahessian import AdaHessian, adahessian  # noqa: E402
from .dot import DOT, dot_trainer  # noqa: E402
from .oasis import OASIS, oasis  # noqa: E402
from .spider_storm import SPIDER, STORM, spider, storm  # noqa: E402

__all__ += ["AdaHessian", "OASIS", "SPIDER", "STORM", "DOT", "adahessian", "oasis", "spider",
            "storm", "dot_trainer"]

# issue 15: more of torch.optim, and what users reach for (elementwise rules; Adan's
# optional clipping and MARS's per-tensor clip are reduce stages)
from .adabelief import AdaBelief, adabelief  # noqa: E402
from .adabound import AdaBound, adabound  # noqa: E402
from .adadelta import Adadelta, adadelta  # noqa: E402
from .adamod import AdaMod, adamod  # noqa: E402
from .adan import Adan, adan  # noqa: E402
from .ademamix import AdEMAMix, ademamix  # noqa: E402
from .asgd import ASGD, asgd  # noqa: E402
from .laprop import LaProp, laprop  # noqa: E402
from .mars import MARS, MARSLion, mars, mars_lion  # noqa: E402
from .qhadam import QHAdam, qhadam  # noqa: E402
from .radam import RAdam, radam  # noqa: E402
from .rprop import Rprop, rprop  # noqa: E402
from .tiger import Tiger, tiger  # noqa: E402
from .yogi import Yogi, yogi  # noqa: E402

__all__ += ["RAdam", "Adadelta", "Rprop", "AdaBelief", "AdaBound", "AdaMod", "Adan", "AdEMAMix",
            "LaProp", "MARS", "MARSLion", "QHAdam", "Tiger", "Yogi", "radam", "adadelta", "rprop",
            "adabelief", "adabound", "adamod", "adan", "ademamix", "laprop", "mars", "mars_lion",
            "qhadam", "tiger", "yogi", "ASGD", "asgd"]

# sign-vote data parallelism: 1-bit sign vectors on torch.distributed (issue 17)
from .distributed_sign import DistributedLion, SignumMV, distributed_lion, signum_mv  # noqa: E402

__all__ += ["DistributedLion", "SignumMV", "distributed_lion", "signum_mv"]

# issue 15: sparse gradients (lazy sparse staging) and Sophia's clipped Hessian step
from .sophia import SophiaH, sophia_h  # noqa: E402
from .sparse_adam import SparseAdam, sparse_adam  # noqa: E402

__all__ += ["SparseAdam", "sparse_adam", "SophiaH", "sophia_h"]

# issue 15: scoped states (per-tensor / per-row / per-column state)
from .adafactor import Adafactor, adafactor  # noqa: E402
from .adafactor_original import AdafactorOriginal, adafactor_original  # noqa: E402
from .came import CAME, came  # noqa: E402
from .dadapt_adam import DAdaptAdam, dadapt_adam  # noqa: E402
from .nadam import NAdam, nadam  # noqa: E402
from .prodigy import Prodigy, prodigy  # noqa: E402
from .sm3 import SM3, sm3  # noqa: E402

__all__ += ["NAdam", "nadam", "Adafactor", "adafactor", "AdafactorOriginal",
            "adafactor_original", "SM3", "sm3", "Prodigy", "prodigy",
            "DAdaptAdam", "dadapt_adam", "CAME", "came"]
