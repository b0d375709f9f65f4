"""The one exception type the DSL raises for a malformed rule."""


class DSLError(ValueError):
    """A rule cannot be built or compiled as written.

    The message always names the rule, and where it applies the offending
    expression, hyperparameter or state, so the user can find it in their code.
    """


# TypeErrors Python raises when a rule treats a SymPy expression as a number, and what to
# write instead (the raw messages come from deep inside SymPy and name nothing of ours).
_MISUSE_HINTS = (
    ("truth value of Relational",
     "a Python max()/min()/if/and/or on DSL expressions needs a True/False it cannot have; "
     "write maximum(a, b), minimum(a, b), clamp(x, lo, hi) or where(cond, a, b)"),
    ("convert expression to",
     "a math or numpy function got a DSL expression (math.sqrt(g)); use the DSL's own "
     "sqrt, rsqrt, exp, log, abs, sign, pow (from optforge.dsl)"),
)


def misuse_hint(exc: TypeError) -> str:
    """What to write instead of the Python operation that raised ``exc``."""
    text = str(exc)
    for needle, hint in _MISUSE_HINTS:
        if needle in text:
            return hint
    return "a Python operation that SymPy expressions do not support?"
