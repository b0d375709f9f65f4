"""SparseAdam — Adam for sparse gradients, with torch.optim.SparseAdam's semantics.

Kingma & Ba (2015)'s Adam, masked: only the elements a sparse gradient holds are updated
(their moments and the parameter); the others are left exactly as they are, their
moments not decayed. torch.optim.SparseAdam's arithmetic, for a present element:

    m <- m + (1 - β1) (g - m)
    v <- v + (1 - β2) (g² - v)
    p <- p - lr sqrt(1 - β2^t) / (1 - β1^t) · m / (sqrt(v) + eps)

t is the parameter's own step count (each stepped parameter counts every step, as in
torch, even one whose gradient holds nothing). The runtime's lazy sparse staging
(``runtime/lazy_sparse.py``) coalesces the gradient, gathers the parameter and moments at
its indices, runs this rule's kernel over them and scatters them back.

Gradients must be sparse (``nn.Embedding(sparse=True)``); a dense one is refused with
torch's message, as are sparse and complex parameters. Unlike torch, lr = 0 is accepted
(it leaves the parameters where they are).
"""
from ..dsl import Rule, grad, param, sqrt, state, step
from ..compiler.quant_plan import quantized_states
from ..runtime import lazy_sparse
from ._base import CatalogueOptimizer


def sparse_adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, maximize=False):
    p, g, t = param(), grad(), step()
    g = -g if maximize else g
    beta1, beta2 = betas
    m, v = state("exp_avg"), state("exp_avg_sq")
    m1 = m + (1 - beta1) * (g - m)
    v1 = v + (1 - beta2) * (g * g - v)
    step_size = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
    return Rule(p - step_size * (m1 / (sqrt(v1) + eps)), exp_avg=m1, exp_avg_sq=v1)


class SparseAdam(CatalogueOptimizer):
    """Adam over the elements a sparse gradient holds (torch.optim.SparseAdam semantics)."""

    rule = sparse_adam
    source = "Kingma & Ba (2015), arXiv:1412.6980; torch.optim.SparseAdam"
    torch_flags: dict = {}  # torch.optim.SparseAdam has no implementation flags
    supports_sparse_grads = True

    def __init__(self, params, *args, **kwargs):
        if kwargs.get("skip_nonfinite"):
            # its check is a reduce stage over whole gradients; lazy staging runs
            # elementwise kernels over the present elements only
            raise ValueError("SparseAdam: skip_nonfinite=True is not supported (the "
                             "non-finite check is a reduction; lazy sparse staging steps "
                             "elementwise rules only)")
        super().__init__(params, *args, **kwargs)
        sparse, complex_ = [], []
        for i, group in enumerate(self.param_groups):
            for j, p in enumerate(group["params"]):
                if p.is_sparse:
                    sparse.append([i, j])
                if p.is_complex():
                    complex_.append([i, j])
        if sparse:  # torch's messages
            raise ValueError(f"Sparse params at indices {sparse}: SparseAdam requires dense "
                             "parameter tensors")
        if complex_:
            raise ValueError(f"Complex params at indices {complex_}: SparseAdam does not "
                             "support complex parameters")

    def check_parameter(self, p, labels, j: int, compiled) -> None:
        if not p.grad.is_sparse:
            raise RuntimeError("SparseAdam does not support dense gradients, please consider "
                               f"Adam instead ({type(self).__name__}: {labels[j]})")
        super().check_parameter(p, labels, j, compiled)

    def launcher_for(self, compiled, device, dtype):
        """The bucket's launcher over the elements its sparse gradients hold."""
        if quantized_states(compiled.plan):  # rows of a packed state are not its rows
            raise ValueError("SparseAdam: state_dtype='int8' is not supported (lazy sparse "
                             "updates write rows of the states; use 'bfloat16')")
        return lazy_sparse.wrap(super().launcher_for(compiled, device, dtype), compiled.plan)
