"""Run one numba-backend step in a fresh process and report what the caches did (JSON).

Used by test_numba_cache.py; the cache directory comes from $OPTFORGE_CACHE_DIR.
The rule is plain SGD (the cheapest kernel to compile): p <- p - lr * g.
"""
import json
import sys
import time

start = time.perf_counter()
import torch  # noqa: E402

import optforge  # noqa: E402
from optforge.runtime.backends import BACKENDS  # noqa: E402
from optforge.runtime.compiled import compile_rule  # noqa: E402

p = torch.nn.Parameter(torch.linspace(-1, 1, 10_001))
p.grad = torch.linspace(2, 3, 10_001)
expected = p.detach() - 0.5 * p.grad
opt = optforge.SGD([p], lr=0.5, backend="numba")
opt.step()
elapsed = time.perf_counter() - start
compiled = compile_rule(opt.spec, opt.spec.variant_of(opt.param_groups[0]))
module = compiled.launcher(BACKENDS["numba"]).kernel("float32")
stats = module.kernel.stats
json.dump({"ok": bool(torch.equal(p.detach(), expected)), "module": module.__file__,
           "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values()),
           "seconds": elapsed}, sys.stdout)
