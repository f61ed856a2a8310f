"""Hardware profiles: the shipped ones load, bad files fail with the field named."""

import json

import pytest

from harness import ProfileError, load_profile, profile_names
from harness.model import profiles
from harness.model.profiles import FIGURES, cpu_key, default_profile, from_dict, validate_profile

REQUIRED = {"tpu-v4i-cmem", "h100-offload", "h200-offload", "tpu-v5e-offload", "cpu-local"}


def test_shipped_profiles_load_with_sources():
    assert REQUIRED <= set(profile_names())
    for name in profile_names():
        p = load_profile(name)
        assert p.name == name
        assert all(p.sources[f].strip() for f in FIGURES)
        assert validate_profile(p) == p and from_dict(json.loads(p.to_json())) == p
        assert p.realizable == (p.memory_model == "offload")
    cmem = load_profile("tpu-v4i-cmem")
    assert cmem.memory_model == "direct" and not cmem.realizable and cmem.fast_capacity_bytes == 128 << 20
    for name in ("h100-offload", "h200-offload", "tpu-v5e-offload"):
        assert load_profile(name).memory_model == "offload" and load_profile(name).realizable
    cpu = load_profile("cpu-local")
    assert cpu.fast_bandwidth == cpu.slow_bandwidth and not cpu.realizable


def test_load_by_path_and_defaults(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(load_profile("h200-offload").to_json())
    assert load_profile(str(path)) == load_profile("h200-offload")
    # the CPU's default is the profile calibrated on its measured programs and ops
    assert default_profile("cpu") == "cpu-local-fitted" and default_profile("gpu") == "h100-offload"
    assert "measurement: fitted" in load_profile("cpu-local-fitted").sources["conv_flop_rate"]
    assert default_profile("tpu") == "tpu-v5e-offload" and default_profile("cuda") == "h100-offload"
    with pytest.raises(ProfileError, match="no default profile.*cpu-local"):
        default_profile("metal")


def test_optional_figures_default_and_are_checked(tmp_path):
    data = json.loads(load_profile("h100-offload").to_json())
    for name in ("conv_flop_rate", "matmul_half_flops", "loop_iteration_seconds", "program_overhead_seconds"):
        del data[name], data["sources"][name]
    plain = from_dict(data)  # left out: the general figure, or no such cost
    assert plain.conv_flop_rate is None and plain.rate("conv_flop_rate") == plain.flop_rate
    assert plain.matmul_half_flops == plain.loop_iteration_seconds == plain.program_overhead_seconds == 0.0
    with pytest.raises(ProfileError, match="conv_flop_rate: no source"):
        from_dict(data | {"conv_flop_rate": 1e12})
    with pytest.raises(ProfileError, match="loop_iteration_seconds: expected a non-negative number"):
        from_dict(data | {"loop_iteration_seconds": -1.0})
    with pytest.raises(ProfileError, match="move_bandwidth: expected a positive number"):
        from_dict(data | {"move_bandwidth": 0.0})


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ProfileError, match="valid profiles: .*h100-offload"):
        load_profile("a100")


def _bad(tmp_path, edit):
    data = json.loads(load_profile("h100-offload").to_json())
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("fast_bandwidth"), "fast_bandwidth: missing"),
    (lambda d: d.update(flop_rate="fast"), "flop_rate: expected a positive number"),
    (lambda d: d.update(copy_bandwidth=-1), "copy_bandwidth: expected a positive number"),
    (lambda d: d.update(granule_bytes=1.5), "granule_bytes: expected a positive integer"),
    (lambda d: d.update(memory_model="cache"), "memory_model: 'cache'"),
    (lambda d: d.update(backend="fpga"), "backend: 'fpga'"),
    (lambda d: d.update(realizable="yes"), "realizable"),
    (lambda d: d.update(colour="red"), "unknown field"),
    (lambda d: d["sources"].pop("slow_bandwidth"), "slow_bandwidth: no source"),
    (lambda d: d.update(granule_bytes=3000), "granule_bytes: 3000 does not divide"),
    (lambda d: d.update(granule_bytes=0), "granule_bytes: expected a positive integer"),
    (lambda d: d.update(fast_capacity_bytes=True), "fast_capacity_bytes: expected a positive integer"),
    (lambda d: d.update(op_overhead_seconds=0), "op_overhead_seconds: expected a positive number"),
    (lambda d: d.update(slow_bandwidth=float("nan")), "slow_bandwidth: expected a positive number"),
    (lambda d: d.update(name=3), "name: expected a string"),
    (lambda d: d.update(name=""), "name: empty"),
    (lambda d: d.update(backend="cpu"), "realizable: .*offload model on gpu or tpu"),
    (lambda d: d.update(sources=[]), "sources: expected an object"),
    (lambda d: d["sources"].update(flop_rate=" "), "sources.flop_rate: expected a non-empty string"),
    (lambda d: d["sources"].update(colour="red"), "sources.colour: not a numeric figure"),
])
def test_bad_profile_file_names_the_field(tmp_path, edit, message):
    with pytest.raises(ProfileError, match=message):
        load_profile(_bad(tmp_path, edit))


def test_not_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ProfileError, match="broken.json: not valid JSON"):
        load_profile(str(path))
    path.write_text("[]")
    with pytest.raises(ProfileError, match="broken.json: expected a JSON object"):
        load_profile(str(path))
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(str(tmp_path / "none.json"))


def test_cpu_keys_name_the_model_and_cores():
    assert cpu_key("Intel(R) Xeon(R) Processor", 2) == "intel-xeon-processor-2c"
    assert cpu_key("AMD EPYC", 2) == "amd-epyc-2c"
    assert cpu_key("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", 12) == "intel-core-i7-8700-12c"


@pytest.fixture
def fits(tmp_path, monkeypatch):
    """Three fits of a profile "x-fitted" (two Intel core counts, one AMD) as the shipped ones; host_cpu settable."""
    base = json.loads(load_profile("cpu-local").to_json())
    files = {}
    for model, cores in (("Intel(R) Xeon(R) Processor", 2), ("Intel(R) Xeon(R) Processor", 4), ("AMD EPYC", 2)):
        key = cpu_key(model, cores)
        data = base | {"name": "x-fitted", "description": key,
                       "fitted_on": {"cpu_model": model, "cpu_cores": cores, "machine_id": "0" * 12, "description": key}}
        files[f"x-fitted@{key}"] = tmp_path / f"x-fitted@{key}.json"
        files[f"x-fitted@{key}"].write_text(json.dumps(data))
    monkeypatch.setattr(profiles, "_shipped", lambda: files)
    host = {}
    monkeypatch.setattr(profiles, "host_cpu", lambda: host["cpu"])
    profiles._fit_for_host.cache_clear()
    yield host
    profiles._fit_for_host.cache_clear()


def test_a_fitted_profile_loads_the_fit_of_this_cpu(fits, recwarn):
    fits["cpu"] = ("Intel(R) Xeon(R) Processor", 4)
    assert load_profile("x-fitted").description == "intel-xeon-processor-4c"  # the same model and cores
    assert profile_names() == ["x-fitted"] and not recwarn.list
    fits["cpu"] = ("Intel(R) Xeon(R) Processor", 16)
    profiles._fit_for_host.cache_clear()
    assert load_profile("x-fitted").description == "intel-xeon-processor-2c"  # the same model, other cores
    assert load_profile("x-fitted@amd-epyc-2c").fitted_on.cpu_model == "AMD EPYC"  # one fit by its name
    fits["cpu"] = ("Ampere Altra", 64)
    profiles._fit_for_host.cache_clear()
    with pytest.warns(UserWarning, match=r"no fit for this machine's CPU \(Ampere Altra, 64 cores.*amd-epyc-2c"):
        assert load_profile("x-fitted").description == "amd-epyc-2c"  # another CPU's, said so
    with pytest.raises(ProfileError, match="unknown profile 'x-fitted@arm-1c'.*x-fitted@amd-epyc-2c"):
        load_profile("x-fitted@arm-1c")


def test_fitted_on_is_checked():
    data = json.loads(load_profile("cpu-local").to_json())
    on = {"cpu_model": "AMD EPYC", "cpu_cores": 2, "machine_id": "e15e8663cf48", "description": "AMD EPYC, 2 cores"}
    cpu_fit = from_dict(data | {"fitted_on": on})
    assert cpu_fit.fitted_on.cpu_key == cpu_fit.fitted_on.key == "amd-epyc-2c"
    assert "accelerator" not in cpu_fit.to_dict()["fitted_on"]  # a CPU's fit keeps the keys its file has
    # a fit on a machine with an accelerator is the accelerator's: keyed by it, whatever the host CPU
    gpu_fit = from_dict(data | {"fitted_on": on | {"accelerator": "NVIDIA H200"}})
    assert gpu_fit.fitted_on.key == "nvidia-h200" and from_dict(json.loads(gpu_fit.to_json())) == gpu_fit
    assert "fitted_on" not in load_profile("cpu-local").to_dict()  # not fitted: not written
    with pytest.raises(ProfileError, match="fitted_on: expected an object with the keys"):
        from_dict(data | {"fitted_on": {"cpu_model": "AMD EPYC"}})
    with pytest.raises(ProfileError, match="fitted_on.accelerator: expected a str, got 3"):
        from_dict(data | {"fitted_on": on | {"accelerator": 3}})
    with pytest.raises(ProfileError, match="fitted_on.cpu_cores: expected a non-empty int, got '2'"):
        from_dict(data | {"fitted_on": on | {"cpu_cores": "2"}})
    assert load_profile("cpu-local-fitted").fitted_on is not None  # the shipped fits record their machine
