"""Pre-tuning the catalogue's Triton kernels for this GPU (``optforge tune``).

The tuner itself is the kernels' (``optforge/kernels/triton/autotune.py``); choosing what
to tune -- every catalogue rule at its default variant, over parameter-size sets shaped
like real models -- is the catalogue's.
"""
from __future__ import annotations

import torch

from ..kernels.triton.autotune import Autotuner, default_tuner, default_tuning_sets


def tune_catalogue(names=None, progress: bool = True, *, device=None, sets=None,
                   dtypes=(torch.float32, torch.bfloat16), tuner: Autotuner | None = None):
    """Pre-tune the catalogue rules (default variants) for this GPU; returns
    ``{(rule, dtype, set): config}``. Later runs, in any process, reuse the results.

    ``device`` defaults to the current CUDA device; the CPU is accepted only under
    the Triton interpreter with an explicit ``tuner`` (how the tests drive it).
    """
    from tqdm import tqdm

    from ..kernels.triton.available import interpreter_on
    from ..kernels.triton.launcher import TritonLauncher
    from ..runtime.compiled import compile_rule
    from ..runtime.state import new_state
    from ._base import REGISTRY

    if device is None:
        if not torch.cuda.is_available():
            raise RuntimeError("optforge tune needs a CUDA GPU: torch.cuda.is_available() is "
                               "False here (tuning targets the GPU that will train)")
        device = torch.device("cuda", torch.cuda.current_device())
    device = torch.device(device)
    if device.type != "cuda" and not (interpreter_on() and tuner is not None):
        raise RuntimeError(f"tune_catalogue runs on CUDA devices, not {device} (the CPU only "
                           "under TRITON_INTERPRET=1 with an explicit tuner, for tests)")
    tuner = tuner or default_tuner()
    known = {n.lower(): n for n in REGISTRY}
    chosen = list(REGISTRY) if not names else []
    for name in names or ():
        if name.lower() not in known:
            raise ValueError(f"unknown catalogue rule {name!r}; known: {', '.join(REGISTRY)}")
        chosen.append(known[name.lower()])
    # matrix rules need 2-D parameters and layer statistics: their elementwise kernel is
    # tuned on first use instead
    chosen = [n for n in chosen if not compile_rule(REGISTRY[n].rule,
                                                    REGISTRY[n].rule.default_variant
                                                    ).plan.matrix_stages]
    jobs = [(n, d, s) for n in chosen for d in dtypes for s in (sets or default_tuning_sets())]
    results = {}
    for name, dtype, (label, sizes) in tqdm(jobs, disable=not progress, unit="config",
                                            desc="optforge tune"):
        spec = REGISTRY[name].rule
        compiled = compile_rule(spec, spec.default_variant)
        launcher = TritonLauncher(compiled.plan, tuner=tuner)
        params = [torch.zeros(n, device=device, dtype=dtype) for n in sizes]
        grads = [torch.randn(n, device=device).to(dtype) for n in sizes]
        hyper = spec.hyper_values(spec.defaults)
        made = [new_state(compiled.plan.states, p, hyper) for p in params]
        for m, p in zip(made, params):  # inputs (given(...)): any values of the right shape
            m.update({name: torch.randn_like(p) for name, d in compiled.plan.states.items()
                      if not d.stored})
        states = [[m[s] for m in made] for s in compiled.plan.states]
        launcher(params, grads, states, compiled.scalars(hyper, 1.0))
        results[(name, str(dtype).replace("torch.", ""), label)] = \
            launcher.config_for(params[0].dtype, device, tuple(sizes)).as_dict()
        del params, grads, made, states
    return results
