"""Parameters: the cell is found (tag or %%deploy params), typed, and values are checked."""

from __future__ import annotations

import pytest

from nbdeploy.base.errors import ParameterError
from nbdeploy.base.notebook import load_notebook
from nbdeploy.job import params as P
from nbdeploy.job.batch import expand_grid


def test_types_are_inferred_from_the_defaults():
    specs = P.infer_specs('# parameters\nalpha = 1.0\nn = 3\nname = "x"\nflag = False\n'
                          'layers = [8, 4]\nopts = {"a": 1}\nthing = make()\nx: int = 2\n')
    assert {k: s.type for k, s in specs.items()} == {
        "alpha": "float", "n": "int", "name": "str", "flag": "bool", "layers": "list",
        "opts": "dict", "thing": "any", "x": "int"}
    assert specs["alpha"].default == 1.0 and specs["n"].line == 3


def test_tagged_cell_and_magic_cell_are_found(proj):
    tagged = P.find_parameters_cell(load_notebook(proj / "tiny.ipynb"))
    assert (tagged.index, tagged.via) == (1, "tag")
    assert list(tagged.specs) == ["alpha", "n", "label", "fail", "data_path"]
    magic = P.find_parameters_cell(load_notebook(proj / "magic_params.ipynb"))
    assert (magic.index, magic.via) == (1, "magic")
    assert magic.defaults() == {"alpha": 1, "label": "a"}


def test_job_copy_of_a_magic_cell_gets_the_tag_in_memory_only(proj):
    path = proj / "magic_params.ipynb"
    before = path.read_bytes()
    nb = load_notebook(path)
    job, pc = P.job_notebook(nb)
    cell = job.cells[pc.index]
    assert "parameters" in cell.metadata["tags"]
    assert cell.source.startswith("# %%deploy params")
    assert "tags" not in nb.cells[pc.index].metadata  # the loaded notebook is untouched
    assert path.read_bytes() == before


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("alpha", "2", 2.0), ("alpha", "1e-3", 0.001), ("n", "7", 7), ("fail", "true", True),
    ("fail", "no", False), ("label", "12", "12"), ("data_path", "other.csv", "other.csv"),
])
def test_command_line_values_are_converted(proj, name, value, expected):
    pc = P.find_parameters_cell(load_notebook(proj / "tiny.ipynb"))
    got = P.resolve(pc, cli=[(name, value)])[name]
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(("values", "match"), [
    ({"n": "three"}, "parameter 'n' expects int"),
    ({"n": 2.5}, "parameter 'n' expects int"),
    ({"alpha": True}, "parameter 'alpha' expects float"),
    ({"fail": "maybe"}, "expects bool"),
    ({"label": [1]}, "expects str"),
])
def test_wrong_types_are_errors(proj, values, match):
    pc = P.find_parameters_cell(load_notebook(proj / "tiny.ipynb"))
    with pytest.raises(ParameterError, match=match):
        P.check(pc, values)


def test_unknown_parameter_names_the_closest_one(proj):
    pc = P.find_parameters_cell(load_notebook(proj / "tiny.ipynb"))
    with pytest.raises(ParameterError, match="unknown parameter 'alpah'") as exc:
        P.resolve(pc, cli=[("alpah", "1")])
    assert "did you mean 'alpha'" in str(exc.value)


def test_yaml_file_then_command_line(proj):
    pc = P.find_parameters_cell(load_notebook(proj / "tiny.ipynb"))
    (proj / "p.yaml").write_text("alpha: 3\nn: 4\n")
    assert P.resolve(pc, params_file=proj / "p.yaml", cli=[("n", "5")]) == {"alpha": 3.0, "n": 5}


def test_grid_product_and_explicit_runs():
    sets = expand_grid({"grid": {"a": [1, 2], "b": ["x", "y"], "c": 0}, "runs": [{"a": 9}]})
    assert sets == [{"a": 1, "b": "x", "c": 0}, {"a": 1, "b": "y", "c": 0},
                    {"a": 2, "b": "x", "c": 0}, {"a": 2, "b": "y", "c": 0}, {"a": 9}]
    assert expand_grid([{"a": 1}]) == [{"a": 1}]
    with pytest.raises(ParameterError, match="empty"):
        expand_grid({"grid": {}})


def test_bad_grid_entry_is_an_error_before_any_kernel(proj):
    from nbdeploy.job.batch import run_batch

    with pytest.raises(ParameterError, match=r"grid entry 2 .*'n' expects int"):
        run_batch(proj / "tiny.ipynb", {"runs": [{"n": 1}, {"n": 2}, {"n": "x"}]}, tracking="off")
    assert not (proj / ".nbdeploy" / "tiny" / "runs").exists()
