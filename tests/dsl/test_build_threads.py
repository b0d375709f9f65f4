"""Rules built in two threads at once declare their states into their own rule: the build
context is per thread (one module-level stack mixed them: a state of one rule could land
in the other, or a rule's name appear in the other's errors)."""
import threading

from optforge.dsl import Rule, RuleSpec, grad, param, state


def _rule_with(names: list[str], started: threading.Barrier, declared: threading.Barrier):
    def rule(lr=0.1):
        p, g = param(), grad()
        started.wait()  # both builds are now inside their build context
        update = sum(state(n) for n in names)
        declared.wait()  # both have declared all their states before either leaves
        return Rule(p - lr * (g + update), **{n: state(n) + g for n in names})
    rule.__name__ = "rule_" + names[0]
    return rule


def test_two_threads_build_their_own_rules():
    started, declared = threading.Barrier(2, timeout=10), threading.Barrier(2, timeout=10)
    specs = [RuleSpec(_rule_with(["a1", "a2"], started, declared)),
             RuleSpec(_rule_with(["b1", "b2", "b3"], started, declared))]
    built, errors = {}, []

    def build(spec):
        try:
            built[spec.name] = spec.build()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(s,)) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    assert sorted(built["rule_a1"].states) == ["a1", "a2"]
    assert sorted(built["rule_b1"].states) == ["b1", "b2", "b3"]
