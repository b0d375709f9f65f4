"""The one exception type the DSL raises for a malformed rule."""


class DSLError(ValueError):
    """A rule cannot be built or compiled as written.

    The message always names the rule, and where it applies the offending
    expression, hyperparameter or state, so the user can find it in their code.
    """
