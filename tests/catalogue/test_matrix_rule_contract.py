"""What every matrix rule (preconditioners, orthogonalisation) owes its users, tested once:
a checkpoint taken mid-run continues bit for bit on a conv weight (the 2-D view), and a
vector parameter is refused naming it (route biases to an elementwise rule instead)."""
import pytest
import torch

from optforge.catalogue.muon import Muon
from optforge.catalogue.scaled_gd import ScaledGD
from optforge.catalogue.shampoo import Shampoo
from optforge.catalogue.soap import SOAP

# rule, its hyperparameters, the matrix states a (8, 3, 3, 3) weight has (name: shape)
RULES = [
    (Shampoo, dict(lr=0.05, momentum=0.9, precondition_frequency=3),
     {"L": (8, 8), "PR": (27, 27)}),
    (SOAP, dict(lr=1e-2, precondition_frequency=3), {"QL": (8, 8), "QR": (27, 27)}),
    (ScaledGD, dict(lr=0.05, damping=0.1), {}),  # no state beyond the step count
    (Muon, dict(lr=0.02), {}),
]


@pytest.mark.parametrize("cls, kw, shapes", RULES, ids=[r[0].__name__ for r in RULES])
def test_state_dict_round_trip(cls, kw, shapes):
    torch.manual_seed(1)
    gen = [torch.randn(8, 3, 3, 3) for _ in range(9)]
    a = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
    b = torch.nn.Parameter(a.detach().clone())
    oa, ob = cls([a], **kw), cls([b], **kw)
    for g in gen[:4]:
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    saved = ob.state_dict()
    assert {k: tuple(saved["state"][0][k].shape) for k in shapes} == shapes
    ob = cls([b], **kw)
    ob.load_state_dict(saved)
    for g in gen[4:]:
        a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        ob.step()
    assert torch.equal(a.detach(), b.detach())


@pytest.mark.parametrize("cls", [r[0] for r in RULES], ids=[r[0].__name__ for r in RULES])
def test_vectors_are_refused(cls):
    b = torch.nn.Parameter(torch.zeros(8))
    b.grad = torch.ones(8)
    with pytest.raises(ValueError, match=r"parameter 0 of group 0 has shape \(8,\); the rule "
                                         "uses matrix operations"):
        cls([b]).step()
    assert torch.equal(b.detach(), torch.zeros(8))  # refused before anything moved
