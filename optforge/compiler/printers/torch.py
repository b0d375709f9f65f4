"""Prints a plan's stages as torch operations on whole tensors: the torch spellings of
``base.BasePrinter`` (which refuses any node it does not know). This backend is the
numerical oracle for all others, and the only one that runs matrix stages.
"""
from __future__ import annotations

import sympy as sp

from ...dsl.matrix import Every, Orthogonalize
from ...dsl.symbols import TensorSymbol
from ..abi import roundings
from ..packed_signs import SIGN_BITS, SIGN_VOTES, vote_ops
from ..plan import (ElemTemp, KernelPlan, ReduceResult, Rounding, ScopeTemp, StorageDtype,
                    TensorRole)
from ..rounding import SEED, STEP, salt
from ..templates import render
from .base import BasePrinter, local

__all__ = ["TorchPrinter", "arg", "local", "torch_source"]

# buffer dtypes the matrix stage neither widens nor narrows
HALF = (StorageDtype.BFLOAT16, StorageDtype.FLOAT16)


def arg(name: str) -> str:
    """The generated-code argument holding the tensor ``name`` (p, g or a state)."""
    return f"t_{name}"


class TorchPrinter(BasePrinter):
    backend = "torch"
    UNARY = {sp.Abs: "torch.abs", sp.sign: "_math.sign", sp.exp: "torch.exp",
             sp.log: "torch.log"}
    SQRT, POW, MAX, MIN = "torch.sqrt", "torch.pow", "torch.maximum", "torch.minimum"
    SYMBOLS = (sp.Symbol,)
    # reduction results are 0-dim (or per-row/column) tensors: printed as tensors too
    PER_ELEMENT = (TensorSymbol, ReduceResult, ScopeTemp)
    FINITE_ONLY = False

    def __init__(self, rule_name: str, salts: dict[str, int] | None = None):
        super().__init__(rule_name)
        self.keep_dtype = set()  # orthogonalize nodes whose result a half buffer takes as is
        self.salts = salts or {}  # each stochastic store's stream (compiler/rounding.py)
        self.votes: dict[str, str] = {}  # packed collective results -> op (packed_signs)

    def temps(self, temps) -> list[str]:
        """``name = value`` lines for one generated function's temporaries."""
        self.note_scalar_temps(temps)
        return [f"    {sym.name} = {self.doprint(e)}" for sym, e in temps]

    def literal(self, value: float) -> str:
        return repr(value)

    def rsqrt(self, base: str) -> str:
        return f"torch.rsqrt({base})"

    def minmax(self, e, fn: str, bound: str) -> str:
        """Tensors pairwise; scalar operands as clamps (torch.maximum takes no scalar)."""
        tensors = [self.doprint(a) for a in e.args if self.tensor(a)]
        scalars = [self.doprint(a) for a in e.args if not self.tensor(a)]
        out = tensors[0]
        for t in tensors[1:]:
            out = self.pairwise(fn, out, t)
        for s in scalars:
            out = f"torch.clamp({out}, {bound}={s})"
        return out

    def select(self, e, cond, value: str, other: str) -> str:
        if self.tensor(cond):
            return f"torch.where({self.doprint(cond)}, {value}, {other})"
        picked = f"({value} if {self.doprint(cond)} else {other})"
        if not self.tensor(e):
            return picked
        # A scalar condition picks one branch: a fresh tensor in the compute dtype, so
        # it never aliases a loaded state that a later store overwrites (the new value
        # would leak in), and a scalar branch is still a tensor for torch.abs/maximum.
        return f"torch.as_tensor({picked}, dtype=compute_dtype).clone()"

    def logic(self, e, op: str) -> str:
        if self.tensor(e):
            op = {"and": "&", "or": "|"}[op]
        return super().logic(e, op)

    def _print_Not(self, e):
        return f"(~{self.doprint(e.args[0])})" if self.tensor(e) else super()._print_Not(e)

    def matrix_op(self, e) -> str:
        """Matrix operations call kernels/matrix.py (imported as ``_mx``)."""
        if isinstance(e, Every):  # lazy: the value is computed only on its steps
            t, k, value, other = (self.doprint(a) for a in e.args)
            return f"({value} if _mx.due({t}, {k}) else {other})"
        args = [self.doprint(a) for a in e.args]
        if isinstance(e, Orthogonalize):  # into a buffer of its own dtype: no float32 trip
            keep = ", keep_dtype=True" if e in self.keep_dtype else ""
            return f"_mx.orthogonalize({', '.join(args[:-1])}, dtype={e.dtype!r}{keep})"
        return f"_mx.{e.fn}({', '.join(args)})"

    def load(self, name: str, dtype: str = "", masked: bool = False) -> str:
        if dtype == SIGN_VOTES:  # every worker's packed bits, counted (packed_signs.py)
            return (f"v_{name} = _load(_bits.vote_values({arg(name)}, t_p, "
                    f"{self.votes[name]!r}), compute_dtype)")
        return f"v_{name} = _load({arg(name)}, compute_dtype)"  # widened to compute_dtype

    def store(self, name: str, dtype: str, value: str, masked: bool = False,
              rounding: Rounding = Rounding.NEAREST_EVEN) -> str:
        if dtype == SIGN_BITS:  # flag byte and bits of value >= 0 (packed_signs.py)
            return f"_bits.store_signs({arg(name)}, {value})"
        if rounding == Rounding.STOCHASTIC:  # the tensor's dtype is known only when it runs:
            # kernels/philox_torch.store rounds a 16-bit one stochastically, copies others
            return (f"_rnd.store({arg(name)}, {value}, {SEED}, tid, {STEP}, "
                    f"{self.salts[name]})")
        return f"{arg(name)}.copy_({value})"  # copy_ rounds to the tensor's dtype to nearest

    def param_round(self, value: str) -> str:
        return f"{value}.to(t_p.dtype).to(compute_dtype)"

    def round_to(self, value: str, dtype: str, tensor: bool = True) -> str:
        """torch's own cast (a scalar first becomes a tensor in the compute dtype, as the
        other backends receive scalars); a float64 value goes to 16 bits via float32."""
        if not tensor:
            value = f"torch.as_tensor({value}, dtype=compute_dtype)"
        if dtype != "float32":
            value = f"{value}.to(torch.float32)"
        return f"{value}.to(torch.{dtype}).to(compute_dtype)"


def torch_source(plan: KernelPlan) -> str:
    """A module defining ``step(<tensors>, scalars, compute_dtype)`` for one plan."""
    rounding = roundings(plan, None)
    pr = TorchPrinter(plan.rule_name, {n: salt(plan, n) for n, how in rounding.items()
                                       if how == Rounding.STOCHASTIC})
    pr.votes = vote_ops(plan)
    names = _signature(plan)
    loads = [f"    {pr.load(r.name, r.dtype)}" for r in plan.loads]
    temps = pr.temps(plan.temps)
    outputs, stores = [], []
    for ref, e in plan.stores:
        value, how = pr.doprint(e), rounding[ref.name]
        if not pr.tensor(e) and ref.dtype != SIGN_BITS:  # the same for every element
            stores.append(f"    {arg(ref.name)}.fill_({value})" if how == Rounding.NEAREST_EVEN
                          else "    " + pr.store(ref.name, ref.dtype, value, rounding=how))
            continue
        if e.is_Symbol and not isinstance(e, ElemTemp):
            value += ".clone()"  # a bare load may alias a tensor written before it
        outputs.append(f"    n_{ref.name} = {value}")
        stores.append("    " + pr.store(ref.name, ref.dtype, f"n_{ref.name}", rounding=how))
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
    """The results available after ``stages`` reduce stages (scoped states' first)."""
    return "".join(f"{r.result.name}, " for r in plan.scoped_loads) + "".join(
        f"{r.result.name}, " for stage in plan.reduce_stages[:stages] for r in stage.reductions)


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
        lines += [f"    {pr.load(r.name)}" for r in stage.loads]
        lines += pr.temps(stage.temps)
        parts = []
        for r in stage.reductions:
            value = pr.doprint(r.expr)
            if not pr.tensor(r.expr):  # a constant (numel's 1): give it the tensor's dtype
                value = f"torch.tensor({value}, dtype=compute_dtype, device=t_p.device)"
            parts.append(f"_reduce({value}, {str(r.op)!r}, {str(r.scope)!r}, t_p)")
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
            load = arg(r.name) if r.role == TensorRole.BUFFER and r.dtype in HALF else \
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
