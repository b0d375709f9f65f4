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

__all__ = ["REGISTRY", "CatalogueOptimizer", "SGD", "Adam", "AdamW", "Adamax", "Adagrad",
           "RMSprop", "Lion", "Signum", "sgd", "adam", "adamw", "adamax", "adagrad", "rmsprop",
           "lion", "signum",
           "LionKappaSign", "LionKappaIdentity", "LionKappaClamp", "EXAdam", "ProxSGDL1",
           "ProxSGDBox", "ProxSGDNonNeg", "OptimisticGD", "FTRL", "COCOB", "lion_kappa_sign",
           "lion_kappa_identity", "lion_kappa_clamp", "exadam", "prox_sgd_l1", "prox_sgd_box",
           "prox_sgd_nonneg", "optimistic_gd", "ftrl", "cocob", "CAdamW", "CLion", "cadamw", "clion",
           "RandomScaledSGDM", "random_scaled_sgdm"]
