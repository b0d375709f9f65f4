"""Prints a plan's elementwise stage as torch operations on whole tensors.

Whitelist printer: every supported SymPy node has a method here, anything else
raises CompileError naming it. This backend is the numerical oracle for all others.
"""
from __future__ import annotations

import sympy as sp
from sympy.core.relational import Relational

from ...dsl.matrix import Every, MatrixOp, Orthogonalize
from ...dsl.symbols import ScalarSymbol, TensorSymbol
from ..errors import CompileError
from ..plan import ElemTemp, KernelPlan, ReduceResult, ScopeTemp
from ..templates import render
from .infix import InfixArithmetic
from . import rounding_spellings as spell

_UNARY = {sp.Abs: "torch.abs", sp.sign: "torch.sign", sp.exp: "torch.exp", sp.log: "torch.log"}
_REL = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


def local(sym: sp.Symbol) -> str:
    """The generated-code variable holding a symbol's value.

    A name the user chose (a state, a hyperparameter, a random scalar, the step) never
    appears bare in generated code, so none can shadow the code's own names (``scalars``,
    ``torch``, ``math``, ``float``, ``_load``...): tensor values are ``v_<name>``, their
    arguments ``t_<name>`` (``arg``), new values ``n_<name>``, user scalars ``u_<name>``.
    The compiler's temporaries (``s0``, ``e1``, ``r0``...) keep their names: a user name
    of that shape is refused (``dsl/symbols.is_reserved``), and none of them has a
    one-letter prefix and an underscore.
    """
    if isinstance(sym, TensorSymbol):
        return f"v_{sym.name}"
    if isinstance(sym, ScalarSymbol):
        return f"u_{sym.name}"
    return sym.name


def arg(name: str) -> str:
    """The generated-code argument holding the tensor ``name`` (p, g or a state)."""
    return f"t_{name}"


HALF = ("bfloat16", "float16")  # buffer dtypes the matrix stage neither widens nor narrows


class TorchPrinter(InfixArithmetic):
    def __init__(self, rule_name: str):
        self.rule_name = rule_name
        self.keep_dtype = set()  # orthogonalize nodes whose result a half buffer takes as is
        # temporaries whose value is a Python scalar or bool (CSE can name a condition on
        # the step or a hyperparameter, ``e0 = (s0 != 0.0)``): not tensors
        self.scalar_temps = set()

    def tensor(self, e) -> bool:
        # reduction results are 0-dim (or per-row/column) tensors: printed as tensors too
        return any(isinstance(s, (TensorSymbol, ReduceResult, ScopeTemp))
                   or (isinstance(s, ElemTemp) and s not in self.scalar_temps)
                   for s in e.free_symbols)

    def temps(self, temps) -> list[str]:
        """``name = value`` lines for one generated function's temporaries, noting which
        hold scalars (afresh: another function may reuse a name for a tensor)."""
        self.scalar_temps, lines = set(), []
        for sym, e in temps:
            if not self.tensor(e):
                self.scalar_temps.add(sym)
            lines.append(f"    {sym.name} = {self.doprint(e)}")
        return lines

    def doprint(self, e) -> str:
        method = getattr(self, "_print_" + type(e).__name__, None)
        if method is None:
            for cls, fn in _UNARY.items():
                if isinstance(e, cls):
                    return f"{fn}({self.doprint(e.args[0])})"
            if isinstance(e, Relational):
                return f"({self.doprint(e.lhs)} {_REL[e.rel_op]} {self.doprint(e.rhs)})"
            if isinstance(e, MatrixOp):
                return self._matrix_op(e)
            if e.is_Symbol:
                return local(e)
            if e.is_Number or isinstance(e, sp.NumberSymbol):
                return repr(float(e))
            raise CompileError(f"rule {self.rule_name!r}: the torch printer does not support "
                               f"{type(e).__name__} in {sp.sstr(e)}")
        return method(e)

    def _print_Mul(self, e):
        num, den = self.split_product(e)
        text = " * ".join(num) or "1.0"
        return f"({text} / {' / '.join(den)})" if den else f"({text})"

    def _print_Pow(self, e):
        base, exp = e.base, e.exp
        if exp == sp.Rational(1, 2):
            return f"torch.sqrt({self.doprint(base)})"
        if exp == sp.Rational(-1, 2):
            return f"torch.rsqrt({self.doprint(base)})"
        if exp == -1:
            return f"(1.0 / {self.doprint(base)})"
        return f"torch.pow({self.doprint(base)}, {self.doprint(exp)})"

    def _minmax(self, e, fn, bound):
        tensors = [self.doprint(a) for a in e.args if self.tensor(a)]
        scalars = [self.doprint(a) for a in e.args if not self.tensor(a)]
        out = tensors[0]
        for t in tensors[1:]:
            out = f"{fn}({out}, {t})"
        for s in scalars:
            out = f"torch.clamp({out}, {bound}={s})"
        return out

    def _print_ParamRound(self, e):  # compiler/storage.py (Kahan-compensated updates)
        return spell.torch_param_round(self.doprint(e.args[0]))

    def _print_Max(self, e):
        return self._minmax(e, "torch.maximum", "min")

    def _print_Min(self, e):
        return self._minmax(e, "torch.minimum", "max")

    def _print_Piecewise(self, e):
        (value, cond), rest = e.args[0], e.args[1:]
        if cond == sp.true or not rest:
            return self.doprint(value)
        other = self.doprint(sp.Piecewise(*rest)) if len(rest) > 1 or rest[0][1] != sp.true \
            else self.doprint(rest[0][0])
        if not self.tensor(cond):
            picked = f"({self.doprint(value)} if {self.doprint(cond)} else {other})"
            if not self.tensor(e):
                return picked
            # A scalar condition picks one branch: a fresh tensor in the compute dtype, so
            # it never aliases a loaded state that a later store overwrites (the new value
            # would leak in), and a scalar branch is still a tensor for torch.abs/maximum.
            return f"torch.as_tensor({picked}, dtype=compute_dtype).clone()"
        return f"torch.where({self.doprint(cond)}, {self.doprint(value)}, {other})"

    def _matrix_op(self, e) -> str:
        """Matrix operations call kernels/matrix.py (imported as ``_mx``)."""
        if isinstance(e, Every):  # lazy: the value is computed only on its steps
            t, k, value, other = (self.doprint(a) for a in e.args)
            return f"({value} if _mx.due({t}, {k}) else {other})"
        args = [self.doprint(a) for a in e.args]
        if isinstance(e, Orthogonalize):  # into a buffer of its own dtype: no float32 trip
            keep = ", keep_dtype=True" if e in self.keep_dtype else ""
            return f"_mx.orthogonalize({', '.join(args[:-1])}, dtype={e.dtype!r}{keep})"
        return f"_mx.{e.fn}({', '.join(args)})"

    def _logic(self, e, tensor_op, python_op):
        op = tensor_op if self.tensor(e) else python_op
        return "(" + f" {op} ".join(self.doprint(a) for a in e.args) + ")"

    def _print_And(self, e):
        return self._logic(e, "&", "and")

    def _print_Or(self, e):
        return self._logic(e, "|", "or")

    def _print_Not(self, e):
        return f"(~{self.doprint(e.args[0])})" if self.tensor(e) else \
            f"(not {self.doprint(e.args[0])})"


def torch_source(plan: KernelPlan) -> str:
    """A module defining ``step(<tensors>, scalars, compute_dtype)`` for one plan."""
    pr = TorchPrinter(plan.rule_name)
    names = _signature(plan)
    loads = [f"    v_{r.name} = _load({arg(r.name)}, compute_dtype)" for r in plan.loads]
    temps = pr.temps(plan.temps)
    outputs, stores = [], []
    for ref, e in plan.stores:
        if not pr.tensor(e):  # a value the same for every element
            stores.append(f"    {arg(ref.name)}.fill_({pr.doprint(e)})"
                          if ref.rounding == "nearest" else "    " + spell.torch_store(
                              plan, ref.name, arg(ref.name), pr.doprint(e)))
            continue
        value = pr.doprint(e)
        if e.is_Symbol and not isinstance(e, ElemTemp):
            value += ".clone()"  # a bare load may alias a tensor written before it
        outputs.append(f"    n_{ref.name} = {value}")
        stores.append("    " + spell.torch_store(plan, ref.name, arg(ref.name), f"n_{ref.name}"))
    return render("torch_step.py", rule=plan.rule_name, fingerprint=plan.fingerprint(),
                  tensors=", ".join(names),
                  scalars="".join(f"{s.name}, " for s in plan.scalar_args),
                  reduce=_reduce_source(plan, pr, names),
                  reduced=_reduced_names(plan, len(plan.reduce_stages)),
                  scope_temps="\n".join(_scope_lines(
                      plan, pr, [e for _, e in plan.temps] + [e for _, e in plan.stores])),
                  loads="\n".join(loads), temps="\n".join(temps),
                  outputs="\n".join(outputs), stores="\n".join(stores))


def _scope_lines(plan: KernelPlan, pr: TorchPrinter, exprs) -> list[str]:
    """The per-scope values that ``exprs`` use, computed from the reductions so far."""
    used = set().union(*[e.free_symbols for e in exprs]) if exprs else set()
    return [f"    {s.name} = {pr.doprint(e)}" for s, e in plan.scope_temps if s in used]


def _reduced_names(plan: KernelPlan, stages: int) -> str:
    return "".join(f"{r.result.name}, " for stage in plan.reduce_stages[:stages]
                   for r in stage.reductions)


def _reduce_source(plan: KernelPlan, pr: TorchPrinter, names: list[str]) -> str:
    """``reduce_<k>(<tensors>, scalars, compute_dtype, reduced)`` per stage: each tensor's
    partial reductions, given the finished results of the earlier stages."""
    lines = []
    for k, stage in enumerate(plan.reduce_stages):
        exprs = [e for _, e in stage.temps] + [r.expr for r in stage.reductions]
        lines += ["", "", f"def reduce_{k}({', '.join(names)}, scalars, compute_dtype, reduced):",
                  f"    ({''.join(f'{s.name}, ' for s in plan.scalar_args)}) = scalars",
                  f"    ({_reduced_names(plan, k)}) = reduced"]
        lines += _scope_lines(plan, pr, exprs)
        lines += [f"    v_{r.name} = _load({arg(r.name)}, compute_dtype)" for r in stage.loads]
        lines += pr.temps(stage.temps)
        parts = []
        for r in stage.reductions:
            value = pr.doprint(r.expr)
            if not pr.tensor(r.expr):  # a constant (numel's 1): give it the tensor's dtype
                value = f"torch.tensor({value}, dtype=compute_dtype, device=t_p.device)"
            parts.append(f"_reduce({value}, {r.op!r}, {r.scope!r}, t_p)")
        lines.append("    return (" + "".join(f"\n        {part}," for part in parts) + ")")
    stages = ", ".join(f"reduce_{k}" for k in range(len(plan.reduce_stages)))
    lines += ["", "", f"REDUCE_STAGES = ({stages}{',' if stages else ''})", ""]
    return "\n".join(lines + _matrix_source(plan, pr, names))


def _matrix_source(plan: KernelPlan, pr: TorchPrinter, names: list[str]) -> list[str]:
    """``matrix_<k>(<tensors>, scalars, compute_dtype, reduced)`` per matrix stage: whole-
    tensor torch math on 2-D views; returns each buffer (shaped like ``p``, float32) and
    each matrix state's new value, in ``stage.outputs`` order."""
    lines = []
    for k, stage in enumerate(plan.matrix_stages):
        exprs = [e for _, e in stage.temps] + [e for _, e in stage.outputs]
        lines += ["", f"def matrix_{k}({', '.join(names)}, scalars, compute_dtype, reduced):",
                  f"    ({''.join(f'{s.name}, ' for s in plan.scalar_args)}) = scalars",
                  f"    ({_reduced_names(plan, len(plan.reduce_stages))}) = reduced"]
        lines += _scope_lines(plan, pr, exprs)
        for r in stage.loads:
            shaped = plan.states.get(r.name) is not None and plan.states[r.name].shape
            # a half-precision pre-stage buffer is an orthogonalize input: it stays as is
            load = arg(r.name) if r.role == "buffer" and r.dtype in HALF else \
                f"_load({arg(r.name)}, compute_dtype)"
            lines.append(f"    v_{r.name} = {load if shaped else f'_mx.view2d({load})'}")
        lines += pr.temps(stage.temps)
        results = []
        for name, e in stage.outputs:
            buffer = plan.states[name].dtype if name in stage.buffers else None
            pr.keep_dtype = {e} if isinstance(e, Orthogonalize) and buffer in HALF else set()
            value = pr.doprint(e) if pr.tensor(e) else \
                f"torch.tensor({pr.doprint(e)}, dtype=compute_dtype, device=t_p.device)"
            pr.keep_dtype = set()
            results.append(value if buffer is None else
                           f"_mx.as_param({value}, t_p, torch.{buffer})")
        lines.append("    return (" + "".join(f"\n        {v}," for v in results) + ")")
        lines.append("")
        lines += _check_source(plan, pr, names, k, exprs)
    stages = ", ".join(f"matrix_{k}" for k in range(len(plan.matrix_stages)))
    checks = ", ".join(f"check_{k}" for k in range(len(plan.matrix_stages)))
    return lines + ["", f"MATRIX_STAGES = ({stages}{',' if stages else ''})",
                    f"MATRIX_CHECKS = ({checks}{',' if checks else ''})", ""]


def _check_source(plan: KernelPlan, pr: TorchPrinter, names: list[str], k: int,
                  exprs) -> list[str]:
    """``check_<k>``: the matrix stage's run-time scalar arguments that can be out of range
    (orthogonalize's steps, every's k), validated before anything of the step runs."""
    checks = []
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if isinstance(node, Orthogonalize):
                checks.append(("_mx.check_steps", node.args[1]))
            elif isinstance(node, Every):
                checks.append(("_mx.check_interval", node.args[1]))
    lines = ["", f"def check_{k}({', '.join(names)}, scalars, compute_dtype, reduced):",
             f"    ({''.join(f'{s.name}, ' for s in plan.scalar_args)}) = scalars",
             f"    ({_reduced_names(plan, len(plan.reduce_stages))}) = reduced"]
    lines += _scope_lines(plan, pr, [arg for _, arg in checks])
    lines += [f"    {fn}({pr.doprint(arg)})" for fn, arg in dict.fromkeys(
        (fn, arg) for fn, arg in checks)] or ["    pass"]
    return lines + [""]


def _signature(plan: KernelPlan) -> list[str]:
    """Every tensor the kernel touches, in a fixed order: p, g, then states."""
    return [arg(n) for n in ["p", "g", *plan.states]]
