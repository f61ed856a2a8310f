"""`mallocbench solve`, `simulate` and `show-map`, run in-process through `harness.cli.main.main`."""

import json

import pytest
from matplotlib import image as mpimg

from agent.registry import policies
from agent.data.synthesize import synthetic
from harness.cli.main import main
from harness.model.mapping import Mapping


@pytest.fixture(scope="module")
def synthetic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inst") / "synthetic.json"
    path.write_text(synthetic(3, 50).to_json())
    return path


@pytest.fixture(scope="module")
def matmul_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inst") / "matmul-chain.json"
    assert main(["extract", "matmul-chain", "-o", str(path)]) == 0
    return path


@pytest.mark.parametrize("which, profile", [("synthetic", "tpu-v4i-cmem"), ("matmul", "h100-offload"),
                                            ("matmul", "tpu-v4i-cmem")])
def test_solve_simulate_show(which, profile, synthetic_file, matmul_file, tmp_path, capsys):
    instance = synthetic_file if which == "synthetic" else matmul_file
    out = tmp_path / "msa.map.json"
    assert main(["solve", str(instance), "--policy", "xla-msa", "--profile", profile, "--budget", "0.5",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    mapping = Mapping.from_json(out.read_text())
    assert mapping.policy == "xla-msa" and mapping.budget == 0.5
    assert "xla-msa" in printed and f"{len(mapping.offsets)} of {mapping.n_buffers} buffers fast" in printed
    assert "all-slow" in printed and "all-fast" in printed and "simulated time" in printed

    assert main(["simulate", str(instance), str(out), "--profile", profile, "--top", "5"]) == 0
    printed = capsys.readouterr().out
    assert "simulated time" in printed
    for col in ("name", "opcode", "elapsed", "compute", "memory", "stall"):
        assert col in printed

    slow = tmp_path / "slow.map.json"
    assert main(["solve", str(instance), "--policy", "all-slow", "--profile", profile, "--budget", "0.5",
                 "-o", str(slow)]) == 0
    figure = tmp_path / "map.png"
    assert main(["show-map", str(instance), str(out), "-o", str(figure), "--compare", str(slow),
                 "--profile", profile]) == 0
    assert str(figure) in capsys.readouterr().out
    height, width = mpimg.imread(figure).shape[:2]
    assert width > 1000 and height > 400


def test_show_map_svg_without_compare(synthetic_file, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["solve", str(synthetic_file), "--policy", "first-fit", "--profile", "tpu-v4i-cmem",
                 "--budget", "0.3", "--seed", "1", "-o", str(out)]) == 0
    svg = tmp_path / "m.svg"
    assert main(["show-map", str(synthetic_file), str(out), "-o", str(svg), "--profile", "tpu-v4i-cmem"]) == 0
    assert "<svg" in svg.read_text()


def test_help_lists_the_policies(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["solve", "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for policy in policies():
        assert policy in help_text


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error:") and "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_policy(synthetic_file, tmp_path, capsys):
    err = _error(["solve", str(synthetic_file), "--policy", "magic", "--profile", "tpu-v4i-cmem",
                  "--budget", "0.5", "-o", str(tmp_path / "m.json")], capsys)
    assert "unknown policy 'magic'" in err and "xla-msa" in err
    assert not (tmp_path / "m.json").exists()


def test_unknown_profile(synthetic_file, tmp_path, capsys):
    err = _error(["solve", str(synthetic_file), "--profile", "no-such-profile", "--budget", "0.5",
                  "-o", str(tmp_path / "m.json")], capsys)
    assert "no-such-profile" in err


@pytest.mark.parametrize("budget", ["0", "1.5", "-0.2", "nan"])
def test_bad_budget(budget, synthetic_file, tmp_path, capsys):
    err = _error(["solve", str(synthetic_file), "--profile", "tpu-v4i-cmem", "--budget", budget,
                  "-o", str(tmp_path / "m.json")], capsys)
    assert "budget" in err and "(0, 1]" in err


def test_missing_budget(synthetic_file, tmp_path, capsys):
    err = _error(["solve", str(synthetic_file), "--profile", "tpu-v4i-cmem", "-o", str(tmp_path / "m.json")],
                 capsys)
    assert "--budget" in err


def test_malformed_instance(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    err = _error(["solve", str(bad), "--profile", "tpu-v4i-cmem", "--budget", "0.5"], capsys)
    assert "bad.json" in err and "not a JSON instance file" in err
    err = _error(["simulate", str(tmp_path / "none.json"), str(bad), "--profile", "tpu-v4i-cmem"], capsys)
    assert "cannot read instance file" in err


@pytest.fixture()
def mapping_file(synthetic_file, tmp_path):
    out = tmp_path / "good.json"
    assert main(["solve", str(synthetic_file), "--profile", "tpu-v4i-cmem", "--budget", "0.5", "-o", str(out)]) == 0
    return out


def test_malformed_mapping(synthetic_file, mapping_file, tmp_path, capsys):
    capsys.readouterr()
    bad = tmp_path / "bad.map.json"
    bad.write_text("[1, 2")
    err = _error(["simulate", str(synthetic_file), str(bad), "--profile", "tpu-v4i-cmem"], capsys)
    assert "bad.map.json" in err and "not a JSON mapping file" in err
    data = json.loads(mapping_file.read_text())
    data["fast"] = {"x": 0}
    bad.write_text(json.dumps(data))
    err = _error(["show-map", str(synthetic_file), str(bad), "-o", str(tmp_path / "f.png"),
                  "--profile", "tpu-v4i-cmem"], capsys)
    assert "fast['x']" in err
    assert not (tmp_path / "f.png").exists()
    err = _error(["simulate", str(synthetic_file), str(tmp_path / "none.json"), "--profile", "tpu-v4i-cmem"],
                 capsys)
    assert "cannot read mapping file" in err


def test_mapping_with_unknown_buffer(synthetic_file, mapping_file, tmp_path, capsys):
    capsys.readouterr()
    data = json.loads(mapping_file.read_text())
    data["fast"]["4242"] = 0
    bad = tmp_path / "unknown.json"
    bad.write_text(json.dumps(data))
    for argv in (["simulate", str(synthetic_file), str(bad)],
                 ["show-map", str(synthetic_file), str(bad), "-o", str(tmp_path / "f.png")],
                 ["show-map", str(synthetic_file), str(mapping_file), "--compare", str(bad),
                  "-o", str(tmp_path / "f.png")]):
        err = _error(argv + ["--profile", "tpu-v4i-cmem"], capsys)
        assert "unknown buffer id 4242" in err and "unknown.json" in err


def test_mapping_of_another_instance(matmul_file, mapping_file, capsys):
    capsys.readouterr()
    err = _error(["simulate", str(matmul_file), str(mapping_file), "--profile", "tpu-v4i-cmem"], capsys)
    assert "matmul-chain/ci" in err and "mapping is for instance" in err


def test_default_profile_is_the_backends(matmul_file, tmp_path, capsys):
    import jax

    from harness.model.profiles import default_profile

    out = tmp_path / "m.json"
    assert main(["solve", str(matmul_file), "--budget", "0.4", "-o", str(out)]) == 0
    assert f"on {default_profile(jax.default_backend())}:" in capsys.readouterr().out
    assert main(["simulate", str(matmul_file), str(out)]) == 0


def test_misaligned_offset_names_the_buffer_and_granule(matmul_file, tmp_path, capsys):
    """Offsets must be multiples of the profile's granule (4 KiB on tpu-v4i-cmem)."""
    out = tmp_path / "m.json"
    assert main(["solve", str(matmul_file), "--profile", "tpu-v4i-cmem", "--budget", "0.5", "-o", str(out)]) == 0
    capsys.readouterr()
    data = json.loads(out.read_text())
    buffer = sorted(data["fast"], key=int)[0]
    data["fast"][buffer] += 256
    out.write_text(json.dumps(data))
    err = _error(["simulate", str(matmul_file), str(out), "--profile", "tpu-v4i-cmem"], capsys)
    assert f"buffer {buffer} (" in err and "granule 4096" in err
