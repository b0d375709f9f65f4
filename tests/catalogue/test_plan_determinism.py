"""Every catalogue rule compiles to the same plan in every process.

The plan's fingerprint names the generated kernels and keys the on-disk caches: if it
depends on the process's hash seed, half the runs miss the cache and recompile (AdamP and
SGDP did: 16 s a first step). Two interpreters with different PYTHONHASHSEED (1 and 4
ordered AdamP's reductions differently before the fix) must agree on every fingerprint."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import json
from optforge.catalogue import REGISTRY
from optforge.runtime.compiled import compile_rule
out = {}
for name, cls in sorted(REGISTRY.items()):
    spec = getattr(cls, "rule", None)
    if spec is not None:
        out[name] = compile_rule(spec, spec.variant_of(spec.defaults)).plan.fingerprint()
print(json.dumps(out))
"""


def fingerprints(seed: int) -> dict:
    env = dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, check=True, cwd=ROOT, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_fingerprints_do_not_depend_on_the_hash_seed():
    first, second = fingerprints(1), fingerprints(4)
    assert len(first) > 50 and "AdamP" in first
    assert {k for k in first if first[k] != second.get(k)} == set()
