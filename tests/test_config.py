import pytest
import torch

import xferutils as xu
from xferutils.core.config import ParameterError


def test_resolve_preset_env_overrides(monkeypatch):
    monkeypatch.setenv("XFER_PRESET", "full")
    assert xu.config.resolve_preset("book") == "full"
    monkeypatch.delenv("XFER_PRESET")
    assert xu.config.resolve_preset("book") == "book"


@pytest.mark.parametrize("bad", ["huge", "", None, 3])
def test_unknown_preset_names_parameter_and_choices(monkeypatch, bad):
    monkeypatch.delenv("XFER_PRESET", raising=False)
    with pytest.raises(ParameterError, match=r"preset=.*choose one of \['smoke', 'book', 'full'\]"):
        xu.config.resolve_preset(bad)


def test_bad_env_preset_is_named(monkeypatch):
    monkeypatch.setenv("XFER_PRESET", "tiny")
    with pytest.raises(ParameterError, match="XFER_PRESET"):
        xu.config.setup("x", preset="book")


def test_by_preset_and_run_pick(monkeypatch):
    monkeypatch.delenv("XFER_PRESET", raising=False)
    assert xu.config.by_preset("full", smoke=1, book=2, full=3) == 3
    run = xu.config.setup("ch", preset="smoke", device="cpu", seed=1)
    assert run.pick(smoke="a", book="b", full="c") == "a"
    assert run.params == {"seed": 1} and run.device == torch.device("cpu")
    assert "torch" in run.summary() and "smoke" in run.summary()


def test_device_choice():
    assert xu.config.get_device("cpu").type == "cpu"
    assert xu.config.get_device("auto").type in {"cpu", "cuda", "mps"}
    with pytest.raises(ParameterError, match="device='tpu'"):
        xu.config.get_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_absent_gpu_is_an_error():
    with pytest.raises(ParameterError, match="no CUDA GPU"):
        xu.config.get_device("cuda")


@pytest.mark.parametrize("value", [1.5, "3", True, None])
def test_check_int_rejects_non_integers(value):
    with pytest.raises(ParameterError, match="seed must be an integer"):
        xu.config.check_int("seed", value)


def test_check_int_range_and_float():
    assert xu.config.check_int("n", 3, 0, 5) == 3
    with pytest.raises(ParameterError, match=r"n=-1 is out of range"):
        xu.config.check_int("n", -1, 0)
    with pytest.raises(ParameterError, match="lr"):
        xu.config.check_float("lr", -0.1, 0.0)
    with pytest.raises(ParameterError, match="lr"):
        xu.config.check_float("lr", float("nan"))


@pytest.mark.parametrize("digits,msg", [([], "must not be empty"), ([1, 10], r"digits\[1\]=10"),
                                        ([2, 2], "repeated"), ("012", "list"), ("7", "list of digits"),
                                        ([-1], "out of range")])
def test_check_digits(digits, msg):
    with pytest.raises(ParameterError, match=msg):
        xu.config.check_digits("digits", digits)


def test_check_seeds():
    assert xu.config.check_seeds("seeds", 3) == [3]
    assert xu.config.check_seeds("seeds", range(3)) == [0, 1, 2]
    for bad in ([], [1, 1], [0.5], [-2]):
        with pytest.raises(ParameterError, match="seeds"):
            xu.config.check_seeds("seeds", bad)


def test_list_parameters_from_papermill_strings():
    # papermill -p passes lists as strings; both forms give the same list
    assert xu.config.check_digits("digits1", "[5, 6, 7]") == [5, 6, 7]
    assert xu.config.check_seeds("seeds", "(0, 1)") == [0, 1]
    for bad in ("5, 6, x", "{'a': 1}", "'abc'"):
        with pytest.raises(ParameterError, match="digits1"):
            xu.config.check_digits("digits1", bad)


def test_run_seeds_and_save(tmp_path, monkeypatch):
    monkeypatch.setenv("XFER_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("XFER_PRESET", raising=False)
    run = xu.config.setup("ch", preset="book", device="cpu", seed0=3, n_seeds=0)
    assert run.seeds(smoke=2, book=5, full=10) == [3, 4, 5, 6, 7]
    run2 = xu.config.setup("ch", preset="book", device="cpu", seed0=0, n_seeds=2)
    assert run2.seeds(smoke=2, book=5, full=10) == [0, 1]
    fam = xu.claims.Family("ch", questions=[xu.claims.Question("q", "q", claims=("*",))])
    fam.threshold("c", "s", "t", [0.9, 0.95], 0.5)
    rel = run.save({"acc": 0.5}, claims=fam)
    assert not rel.startswith("/")
    saved = xu.results.load_results("ch", "book")
    assert saved["acc"] == 0.5 and saved["params"]["seed0"] == 3
    assert saved["claims"][0]["id"] == "c" and saved["claims"][0]["verdict"] == "supported"
    assert saved["environment"].startswith("xferutils")


def test_physical_cores_positive():
    assert xu.config.physical_cores() >= 1


def test_amp_resolution():
    cpu = torch.device("cpu")
    assert xu.config.resolve_amp(False, cpu) is False
    assert xu.config.resolve_amp(True, cpu) is True
    assert xu.config.resolve_amp("auto", cpu) == xu.config.bf16_supported(cpu)
    assert xu.config.bf16_supported(torch.device("meta")) is False
    with pytest.raises(ParameterError, match="amp='yes'"):
        xu.config.resolve_amp("yes", cpu)


def test_threads_override(monkeypatch):
    monkeypatch.setenv("XFER_THREADS", "1")
    assert xu.config.cpu_threads() == 1
    for bad in ("0", "two"):
        monkeypatch.setenv("XFER_THREADS", bad)
        with pytest.raises(ParameterError, match="XFER_THREADS"):
            xu.config.cpu_threads()
    monkeypatch.delenv("XFER_THREADS")
    assert xu.config.cpu_threads() == xu.config.physical_cores()


def test_summary_fits_the_column():
    """The environment line every chapter prints: two lines within the book's 88-character column."""
    run = xu.config.setup("01_dense_baseline", preset="smoke", device="cpu")
    lines = run.summary().splitlines()
    assert len(lines) == 2 and all(len(line) <= 88 for line in lines), lines
    assert "preset smoke" in lines[0] and lines[1].startswith("device cpu")
    assert run.environment().startswith("xferutils") and "chapter 01_dense_baseline" in run.environment()


def test_choice_and_list_checks_name_the_parameter():
    from xferutils.core.config import check_choice, parse_list
    assert check_choice("kind", "kwta", ["softmax", "kwta"]) == "kwta"
    with pytest.raises(ParameterError, match="kind='relu'"):
        check_choice("kind", "relu", ["softmax", "kwta"])
    assert parse_list("digits1", "[5, 6, 7]") == [5, 6, 7] and parse_list("digits1", "(1, 2)") == [1, 2]
    assert parse_list("digits1", [3]) == [3]  # a real list passes through
    with pytest.raises(ParameterError, match="digits1"):
        parse_list("digits1", "five six")


def test_tf32_only_on_cuda_and_the_summary_fits_a_column():
    from xferutils.core.config import short_summary, use_tf32
    before = torch.backends.cuda.matmul.allow_tf32
    use_tf32("cpu")  # a CPU run leaves the CUDA switches alone
    assert torch.backends.cuda.matmul.allow_tf32 == before
    lines = short_summary("cpu", preset="book").splitlines()
    assert len(lines) == 2 and all(len(line) <= 80 for line in lines)
    assert "preset book" in lines[0] and lines[1].startswith("device cpu")
