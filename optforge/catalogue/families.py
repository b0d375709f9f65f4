"""Which family each catalogue optimizer belongs to: the headers of ``optforge list``.

One table here rather than an attribute in every optimizer file, so the grouping is
read and changed in one place. A new catalogue optimizer must be added here: a test
checks that every registered name has a family (``family_of`` otherwise says "other").
"""
from __future__ import annotations

import difflib

# Family -> (one-line description, members in display order).
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "classic": ("SGD and its momentum, clipping and variance-reduction variants",
                ("SGD", "ClippedSGD", "SGDP", "BetaNormalizedGD", "RandomScaledSGDM",
                 "SPIDER", "STORM", "DOT")),
    "adaptive": ("per-coordinate step sizes from gradient statistics",
                 ("Adam", "AdamW", "CAdamW", "Adamax", "EXAdam", "AdamP", "Adagrad",
                  "AdagradNorm", "AdAdaGradNorm", "RMSprop", "RAdam", "NAdam", "Adadelta", "ASGD",
                  "Yogi", "QHAdam", "AdaBelief", "AdEMAMix", "LaProp", "Adan", "MARS",
                  "AdaBound", "AdaMod", "SparseAdam", "Adafactor",
                  "AdafactorOriginal", "CAME", "SM3")),
    "trust-ratio": ("layer-wise rescaling by ||p|| / ||update||", ("LAMB", "LARS")),
    "sign": ("sign of a momentum, and the Lion-K generalisations",
             ("Lion", "CLion", "Signum", "LionKappaSign", "LionKappaIdentity",
              "LionKappaClamp", "LionKappaL2", "Rprop", "Tiger", "MARSLion", "DistributedLion",
              "SignumMV")),
    "matrix": ("whole-matrix preconditioning or orthogonalisation of 2-D parameters",
               ("Muon", "Shampoo", "SOAP", "ScaledGD")),
    "second-order": ("curvature: Fisher / K-FAC factors, Hessian diagonals",
                     ("KFAC", "EKFAC", "MKOR", "MKORH", "NaturalGradient", "AdaFisher",
                      "AdaFisherW", "AdaHessian", "OASIS", "SophiaH")),
    "game/online": ("online learning and regret minimisation (parameter-free, games)",
                    ("Prodigy", "DAdaptAdam", "COCOB", "FTRL", "OptimisticGD", "RMPlus", "PRMPlus",
                     "IREGPRMPlus")),
    "constrained": ("projections, proximal steps and linear minimisation over a set",
                    ("ProxSGDL1", "ProxSGDBox", "ProxSGDNonNeg", "FrankWolfeL1",
                     "FrankWolfeLinf", "FrankWolfeLp", "FrankWolfeSimplex", "FTRLLpBall",
                     "FTRLLinfBall", "ExponentiatedGradient")),
}

OTHER = "other"
_BY_NAME = {name: family for family, (_, names) in FAMILIES.items() for name in names}


def family_of(name: str) -> str:
    """The family of a registered optimizer (``"other"`` if this table lacks it)."""
    return _BY_NAME.get(name, OTHER)


def grouped(names) -> dict[str, list[str]]:
    """``names`` by family, families in FAMILIES order, members in each table's order."""
    names = list(names)
    out: dict[str, list[str]] = {}
    for family, (_, members) in FAMILIES.items():
        found = [n for n in members if n in names]
        if found:
            out[family] = found
    rest = [n for n in names if n not in _BY_NAME]
    if rest:
        out[OTHER] = rest
    return out


def check_family(text: str) -> str:
    """``text`` as a family name (any case), or ValueError listing the families."""
    families = [*FAMILIES, OTHER]
    for family in families:
        if family.lower() == text.lower():
            return family
    raise ValueError(f"unknown family {text!r}{did_you_mean(text, families)}; "
                     f"families: {', '.join(families)}")


def did_you_mean(text: str, candidates) -> str:
    """``" (did you mean 'X' or 'Y'?)"`` for the closest candidates (any case), or ``""``."""
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(text.lower(), list(by_lower), n=3, cutoff=0.5)
    if not close:  # a substring of a name is a good hint too ("adam" -> Adam, AdamW...)
        close = [c for c in by_lower if text.lower() in c][:3]
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(by_lower[c]) for c in close) + "?)"
