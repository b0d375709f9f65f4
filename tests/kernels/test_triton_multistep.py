"""The closure-driven optimizers (optforge.multistep) on the triton backend: each runs
its update through a compiled rule, so each is checked here against the torch backend
with the same checks the multistep suite runs on torch and numba (under
TRITON_INTERPRET=1 on a CPU, compiled on a GPU)."""
import pytest

from tests.triton_env import DEVICE  # noqa: F401,I001 - sets TRITON_INTERPRET first

from tests.multistep import test_armijo as armijo
from tests.multistep import test_competitive as competitive
from tests.multistep import test_extragradient as extragradient
from tests.multistep import test_newton_cg as newton_cg


@pytest.mark.parametrize("shapes", extragradient.SHAPES_XY, ids=str)
def test_extragradient_matches_torch_backend(shapes):
    extragradient.test_matches_reference_and_torch_backend(shapes, "triton")


@pytest.mark.parametrize("cls", [competitive.CGO, competitive.OptimisticCGO],
                         ids=["CGO", "OCGO"])
def test_competitive_gradient_matches_torch_backend(cls):
    competitive.test_every_backend_matches_torch_float32(cls, "triton")


def test_newton_cg_matches_torch_backend():
    newton_cg.test_every_backend_matches_torch_float32("triton")


def test_armijo_around_adam_matches_torch_backend():
    armijo.test_wrapping_optforge_adam_on_every_backend_matches_torch("triton")
