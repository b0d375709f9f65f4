"""The triton tuning space and the cached-config validator keep to configs that do not
spill on a GPU (elements per thread bounded: see configs.MAX_PER_THREAD, measured AOT)."""
import torch

from optforge.kernels.triton import configs
from optforge.kernels.triton.configs import Config

CUDA, CPU = torch.device("cuda"), torch.device("cpu")  # devices named, never touched


def test_gpu_candidates_stay_within_the_per_thread_bound():
    for numels in ((2**20,), (1000,) * 300, (2**27,)):
        space = configs.candidates(CUDA, numels)
        assert space and len(set(space)) == len(space)
        for c in space:
            assert configs.MIN_PER_THREAD <= configs.per_thread(c) <= configs.MAX_PER_THREAD
    assert Config(4096, 4) not in configs.candidates(CUDA, (2**24,))  # 32 per thread: spills


def test_the_heuristic_is_a_valid_gpu_config():
    for numels in ((1,), (2**24,), (100,) * 50):
        assert configs.valid(configs.heuristic(CUDA, numels).as_dict(), CUDA)


def test_cached_spilling_configs_are_rejected_on_a_gpu_only():
    for block, warps in ((65536, 4), (4096, 4), (8192, 8)):
        d = {"BLOCK_SIZE": block, "num_warps": warps}
        assert not configs.valid(d, CUDA)
        assert configs.valid(d, CPU) and configs.valid(d)  # the interpreter's large blocks
    assert configs.valid({"BLOCK_SIZE": 2048, "num_warps": 8}, CUDA)
    assert not configs.valid({"BLOCK_SIZE": 100, "num_warps": 8}, CPU)
    assert not configs.valid({"BLOCK_SIZE": 2048}, CUDA)


def test_every_launch_pins_fma_contraction_off():
    """configs.FP_FUSION (off: products and sums rounded apart, as torch and the
    interpreter round them) reaches every launch, elementwise and reduce, explicitly:
    Triton's default is on in 3.9 and announced to change."""
    from tests.triton_env import DEVICE  # sets TRITON_INTERPRET before a kernel is built

    import optforge
    from optforge.runtime.compiled import compile_rule

    assert configs.FP_FUSION is False
    seen = []

    class Spy:
        def __init__(self, fn):
            self.fn = fn

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                seen.append(kwargs.get("enable_fp_fusion", "unset"))
                return self.fn[grid](*args, **kwargs)
            return launch

    for cls in (optforge.AdamW, optforge.LAMB):
        params = [torch.nn.Parameter(torch.randn(s, device=DEVICE)) for s in ((300,), (7, 9))]
        opt = cls(params, lr=0.01, backend="triton")
        compiled = compile_rule(cls.rule, cls.rule.default_variant)
        kern = opt.launcher_for(compiled, DEVICE, torch.float32).inner.kernel(torch.float32)
        fn, reduce_fns = kern.fn, kern.reduce_fns
        kern.fn, kern.reduce_fns = Spy(fn), tuple(Spy(f) for f in reduce_fns)
        try:
            for p in params:
                p.grad = torch.randn_like(p)
            opt.step()
        finally:
            kern.fn, kern.reduce_fns = fn, reduce_fns
    assert len(seen) == 3 and set(seen) == {False}  # AdamW: 1; LAMB: its norms, then 1
