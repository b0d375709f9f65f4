"""Every optimizer optforge ships, one small file per family."""
from ._base import REGISTRY, CatalogueOptimizer
from .adagrad import Adagrad, adagrad
from .adam import Adam, adam
from .adamax import Adamax, adamax
from .adamw import AdamW, adamw
from .lion import Lion, lion
from .rmsprop import RMSprop, rmsprop
from .sgd import SGD, sgd
from .signum import Signum, signum

__all__ = ["REGISTRY", "CatalogueOptimizer", "SGD", "Adam", "AdamW", "Adamax", "Adagrad",
           "RMSprop", "Lion", "Signum", "sgd", "adam", "adamw", "adamax", "adagrad", "rmsprop",
           "lion", "signum"]
