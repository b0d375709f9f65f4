"""The ``optforge`` command line: every subcommand, and clean errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optforge import CATALOGUE
from optforge.cli import main

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "adabelief.py"


def test_list_names_every_catalogue_optimizer_within_100_columns(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in CATALOGUE:
        assert f"  {name} " in out
    assert "traffic  28 B/param" in out  # AdamW's bytes per parameter
    assert max(len(line) for line in out.splitlines()) <= 100
    headers = [line.split(" (")[0] for line in out.splitlines() if line[:1].isupper()
               and " (" in line and line.split(" (")[0].isupper()]
    assert headers == ["CLASSIC", "ADAPTIVE", "TRUST-RATIO", "SIGN", "MATRIX", "SECOND-ORDER",
                       "GAME/ONLINE", "CONSTRAINED"]  # no optimizer left in "other"


def test_every_optimizer_has_a_family():
    from optforge.catalogue.families import family_of
    assert [n for n in CATALOGUE if family_of(n) == "other"] == []


def test_list_filters_by_family_and_name(capsys):
    assert main(["list", "--family", "Matrix"]) == 0
    out = capsys.readouterr().out
    assert "  Muon " in out and "  SOAP " in out and "  AdamW " not in out
    assert main(["list", "lion"]) == 0
    out = capsys.readouterr().out
    assert "  Lion " in out and "  CLion " in out and "  LionKappaL2 " in out
    assert "  Adam " not in out
    assert main(["list", "adam", "--family", "sign"]) == 2
    assert "no optimizer name contains 'adam' in family 'sign'" in capsys.readouterr().err


def test_list_json_has_every_optimizer_with_its_numbers(capsys):
    assert main(["list", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in records] == list(CATALOGUE)
    by_name = {r["name"]: r for r in records}
    adamw = by_name["AdamW"]
    assert adamw["family"] == "adaptive" and adamw["state_bytes_per_param"] == 8
    assert adamw["traffic_bytes_per_param"]["total"] == 28
    assert adamw["hyperparameters"]["betas"] == [0.9, 0.999]
    for r in records:
        assert set(r["hyperparameters"]) == set(CATALOGUE[r["name"]].rule.defaults)
        assert r["traffic_bytes_per_param"]["total"] > 0 and r["source"]


def test_show_prints_rule_plan_and_generated_code(capsys):
    assert main(["show", "adamw", "--backend", "torch"]) == 0
    out = capsys.readouterr().out
    assert "exp_avg <-" in out and "# elementwise stage" in out
    assert ("def step(t_p, t_g, t_exp_avg, t_exp_avg_sq, scalars, compute_dtype, reduced=(), "
            "tid=0)") in out


def test_show_selects_a_variant(capsys):
    assert main(["show", "Adam", "--set", "amsgrad=true"]) == 0
    assert "max_exp_avg_sq <-" in capsys.readouterr().out


def test_show_and_latex_accept_a_rule_file(capsys):
    assert main(["show", f"{EXAMPLE}:adabelief"]) == 0
    assert "exp_avg_var <-" in capsys.readouterr().out
    assert main(["latex", f"{EXAMPLE}:adabelief"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("\\begin{aligned}") and "\\beta_{1}" in out and "\\epsilon" in out


@pytest.mark.parametrize("argv,message", [
    (["show", "nosuchrule"], "unknown rule 'nosuchrule'"),
    (["show", "adamm"], "unknown rule 'adamm' (did you mean 'Adam' or 'RAdam' or 'NAdam'"),
    (["latex", "lamd"], "(did you mean 'LAMB'"),
    (["list", "--family", "matrx"], "unknown family 'matrx' (did you mean 'matrix'?)"),
    (["list", "adm"], "no optimizer name contains 'adm' (did you mean 'Adam'"),
    (["show", "adam", "--set", "gamma=1"], "no hyperparameter 'gamma'"),
    (["show", "adam", "--set", "amsgrad"], "--set expects key=value"),
    (["show", "adam", "--backend", "cobol"], "unknown backend 'cobol'"),
    (["show", "missing.py:fn"], "rule file 'missing.py' does not exist"),
    (["show", f"{EXAMPLE}:nothing"], "defines no 'nothing'"),
])
def test_bad_input_is_one_clear_line(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_malformed_rule_file_reports_the_dsl_error(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("from optforge.dsl import Rule, param, state\n"
                   "def bad(lr=0.1):\n"
                   "    return Rule(param() - lr * state('m'))\n")
    assert main(["show", f"{bad}:bad"]) == 2
    err = capsys.readouterr().err
    assert "rule 'bad': state 'm' is declared but never written" in err
    assert "Traceback" not in err


def test_demo_trains_and_prints_a_table(capsys):
    from optforge.demo import run_demo
    rows = run_demo(steps=20)
    out = capsys.readouterr().out
    assert "def adabelief" in out and "final loss" in out
    assert "epoch  1/2" in out and "epoch  2/2" in out  # progress, one line per epoch
    assert "(quartiles over 2 epochs)" in out and "is noise" in out
    names = [r[0] for r in rows]
    assert names[0] == "torch.optim.AdamW" and "optforge.AdamW" in names
    torch_loss, ours = rows[0][1], dict((r[0], r[1]) for r in rows)["optforge.AdamW"]
    assert abs(torch_loss - ours) <= 1e-4 * max(1.0, torch_loss)


def test_demo_writes_loss_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from optforge.demo import demo_optimizers, load_example_rule, race, write_plots
    runs = race(demo_optimizers(load_example_rule()), steps=4)
    paths = write_plots(runs, tmp_path, steps=4)
    assert [p.name for p in paths] == ["demo-loss.png", "demo-catalogue-loss.png"]
    for p in paths:
        assert p.read_bytes()[:4] == b"\x89PNG" and p.stat().st_size > 10_000
        curves = json.loads(p.with_suffix(".json").read_text())["curves"]  # for re-plots
        assert all(len(c["steps"]) == len(c["loss"]) == 2 for c in curves.values())
    assert all(len(r.curve) == 2 for r in runs)  # (step 0, loss) and after the epoch


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "optforge", "list"], capture_output=True,
                         text=True, check=True).stdout
    assert "AdamW" in out


def test_docs_catalogue_is_generated_from_the_rules():
    from optforge.catalogue.reference import catalogue_markdown
    page = Path(__file__).resolve().parent.parent / "docs" / "catalogue.md"
    assert page.read_text() == catalogue_markdown() + "\n", \
        "docs/catalogue.md is stale: regenerate with `optforge list --markdown > docs/catalogue.md`"
