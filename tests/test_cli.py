"""The `fusednn` command: info, demo (argument errors, missing packages, --device cuda
without a GPU, a one-epoch run of every demo writing its PNG) and bench (argument
errors, missing PyTorch, --gpu without a GPU, bad --compare files, the runner and
--compare on stand-in suites). Runs in seconds: the
demo run uses --epochs 1; the learning itself is tested in test_learning_*.py."""
import importlib.util
import json
import pathlib
import subprocess
import sys
import types

import pytest

import fusednn.backend as backend
from fusednn import bench, cli, demos
from fusednn.bench import run
from fusednn.demos import _common

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of `fusednn *argv` run in this process."""
    try:
        status = cli.main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


# ----- info ---------------------------------------------------------------------------

def test_info_prints_version_simd_threads_and_cuda(capsys):
    status, out, _ = run_cli(capsys, "info")
    assert status == 0
    fields = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert fields["version"].strip() == backend._C.build_info()["version"]
    assert fields["cpu_simd"].strip() == backend._C.build_info()["simd"]
    assert fields["cpu_isa"].strip() == backend._C.build_info()["cpu_isa"]
    assert fields["cpu_isas_compiled"].strip() == ", ".join(
        backend._C.build_info()["cpu_isas_compiled"])
    for key in ("threads", "cuda_compiled", "gpus", "has_cuda"):
        assert key in fields


def test_python_dash_m_fusednn_runs_the_same_command():
    done = subprocess.run([sys.executable, "-m", "fusednn", "info"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cpu_simd" in done.stdout


def test_importing_fusednn_needs_no_optional_package():
    # The demos import scikit-learn, statsmodels and matplotlib only when they run.
    code = ("import sys; import fusednn, fusednn.cli, fusednn.demos, fusednn.demos.seq2seq; "
            "print([m for m in ('matplotlib', 'sklearn', 'statsmodels', 'torch') "
            "if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_unknown_command_and_stray_arguments_are_usage_errors(capsys):
    status, _, err = run_cli(capsys, "train")
    assert status == 2 and "invalid choice: 'train'" in err
    status, _, err = run_cli(capsys, "info", "--verbose")
    assert status == 2 and "unrecognized arguments: --verbose" in err


# ----- demo: errors ---------------------------------------------------------------------

def test_demo_unknown_name_lists_the_demos(capsys):
    status, out, err = run_cli(capsys, "demo", "resnet")
    assert status == 2
    assert "invalid choice: 'resnet'" in err
    for name in demos.NAMES + ("all",):
        assert f"'{name}'" in err
    assert "===" not in out  # nothing ran


@pytest.mark.parametrize("argv, message", [
    (["demo"], "the following arguments are required: NAME"),
    (["demo", "cnn", "--epochs", "0"], "expected a positive integer, got 0"),
    (["demo", "cnn", "--epochs", "two"], "expected a positive integer, got 'two'"),
    (["demo", "cnn", "--device", "gpu"], "invalid choice: 'gpu'"),
])
def test_demo_bad_arguments(capsys, argv, message):
    status, _, err = run_cli(capsys, *argv)
    assert status == 2
    assert message in err


def test_demo_out_must_be_a_folder(capsys, tmp_path):
    path = tmp_path / "a-file"
    path.write_text("")
    status, out, err = run_cli(capsys, "demo", "gan", "--out", str(path))
    assert status == 1
    assert "is not a folder" in err and "===" not in out


@pytest.mark.skipif(backend.has_cuda(), reason="a GPU is usable here")
def test_demo_device_cuda_without_gpu_fails_before_training(capsys, tmp_path):
    out_dir = tmp_path / "pictures"
    status, out, err = run_cli(capsys, "demo", "cnn", "--device", "cuda", "--out", str(out_dir))
    assert status == 1
    assert "--device cuda cannot be used" in err and "CUDA is unavailable" in err
    assert "===" not in out and not out_dir.exists()


def test_demo_missing_package_names_the_demo_extra(capsys, monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a))
    status, out, err = run_cli(capsys, "demo", "seq2seq", "--out", str(tmp_path))
    assert status == 1
    assert "matplotlib" in err and 'pip install "fusednn[demo]"' in err
    assert "===" not in out


def test_require_reports_the_extra_when_an_import_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` fail
    with pytest.raises(demos.MissingDependency, match=r'matplotlib .*fusednn\[demo\]'):
        _common.figure(4, 3)


# ----- demo: a quick run of every demo --------------------------------------------------

def test_demo_all_one_epoch_writes_small_pngs(capsys, tmp_path):
    for module in ("sklearn", "statsmodels", "matplotlib"):
        pytest.importorskip(module)
    status, out, err = run_cli(capsys, "demo", "all", "--epochs", "1", "--out", str(tmp_path))
    assert status == 0, err
    for name in demos.NAMES:
        image = tmp_path / f"{name}.png"
        assert image.read_bytes()[:8] == PNG_MAGIC, name
        assert image.stat().st_size < 150_000, (name, image.stat().st_size)
        assert f"=== fusednn demo {name}:" in out
        # The metric beside its baseline, then the verdict.
        assert any(line.startswith(f"[{name}] ") and "baseline (" in line
                   for line in out.splitlines()), name
        assert f"[{name}] PASS" in out or f"[{name}] BELOW BASELINE" in out
    assert "Total params: 93,322" in out   # the lecture's CNN
    assert "Total params: 806,017" in out  # the lecture's LSTM
    assert "demos beat their baseline" in out


# ----- bench ------------------------------------------------------------------------------
# fusednn bench from an installed package outside a checkout: test_benchmarks_installed.py.

def test_bench_bad_arguments_come_from_the_runner(capsys):
    status, _, err = run_cli(capsys, "bench", "--fast")
    assert status == 2
    assert "fusednn bench: error: unrecognized arguments: --fast" in err
    status, _, err = run_cli(capsys, "bench", "--suite", "resnet")
    assert status == 2 and "invalid choice: 'resnet'" in err
    status, _, err = run_cli(capsys, "bench", "--fma-pipes", "0")
    assert status == 2 and "--fma-pipes: invalid choice: 0" in err


def test_bench_lists_the_suites(capsys):
    status, out, _ = run_cli(capsys, "bench", "--list")
    assert status == 0
    listed = {line.split()[0] for line in out.strip().splitlines()}
    package = pathlib.Path(bench.__file__).parent
    assert listed == {p.stem[len("bench_"):] for p in package.glob("bench_*.py")}
    assert listed == {"conv", "distributed", "gemm", "interleaved", "ops", "pooling",
                      "recurrent", "shared_cores"}


@pytest.mark.skipif(backend.has_cuda(), reason="a GPU is usable here")
def test_bench_gpu_without_gpu_is_a_clear_error(capsys):
    pytest.importorskip("torch")
    status, out, err = run_cli(capsys, "bench", "--gpu")
    assert status == 1
    assert "--gpu needs a usable GPU" in err and "--cpu" in err
    assert "=====" not in out and "Hardware limits" not in out  # nothing ran


def test_bench_without_torch_names_the_bench_extra(capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    status, out, err = run_cli(capsys, "bench", "--cpu")
    assert status == 1
    assert "PyTorch" in err and 'pip install "fusednn[bench]"' in err
    assert len(err.strip().splitlines()) == 1 and out == ""


@pytest.mark.parametrize("content, message", [
    (None, "cannot read"),
    ("not json", "is not a JSON results file"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('{"results": []}', "holds no benchmark rows"),
])
def test_bench_compare_with_a_bad_file_is_one_line_before_anything_runs(capsys, tmp_path,
                                                                         content, message):
    pytest.importorskip("torch")
    path = tmp_path / "earlier.json"
    if content is not None:
        path.write_text(content)
    status, out, err = run_cli(capsys, "bench", "--cpu", "--compare", str(path))
    assert status == 1 and message in err and len(err.strip().splitlines()) == 1
    assert out == ""


def _stand_in_suites(monkeypatch, suites: dict):
    """The runner's suites replaced by `suites` (name -> module source)."""
    modules = {}
    for name, source in suites.items():
        module = types.ModuleType(f"bench_{name}")
        exec(compile(source, f"bench_{name}", "exec"), module.__dict__)
        modules[name] = module
    monkeypatch.setattr(run, "suite_names", lambda: sorted(modules))
    monkeypatch.setattr(run, "load_suite", lambda name: modules[name])
    # No measuring in these tests: a stand-in for the CPU's limits.
    monkeypatch.setattr(run.limits, "cpu_limits", lambda threads, pipes: STAND_IN_LIMITS)


STAND_IN_LIMITS = {"isa": "avx2", "lanes_fp32": 8, "threads": 1, "fma_pipes": 2,
                   "fma_pipes_source": "table", "clock_GHz": 3.0, "clock_note": "stand-in",
                   "fma_fp32_GFLOPs": 96.0, "fma_fp64_GFLOPs": 48.0, "copy_GBps": 20.0}

ALPHA = """
import argparse
from fusednn.bench import common
def main(argv=None):
    print('alpha got', argv)
    parser = argparse.ArgumentParser()
    parser.add_argument('--speed', type=float, default=1.0)
    common.add_run_options(parser)
    args = parser.parse_args([a for a in argv if a != '--quick'])
    rows = [{'shape': 'one', 'fusednn_ms': 2.0 / args.speed, 'torch_ms': 3.0,
             'torch_over_fusednn': 1.5 * args.speed, 'fusednn_fraction': 0.25 * args.speed}]
    common.write_results(args, 'alpha-cpu', {'results': rows},
                         '# Alpha\\n\\n| a |\\n|---|\\n| 1 |\\n')
"""
BETA = """
def main(argv):
    print('beta got', argv)
"""


def test_bench_runner_runs_every_suite_and_summarises_its_tables(capsys, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    _stand_in_suites(monkeypatch, {"alpha": ALPHA, "beta": BETA})
    out_dir = tmp_path / "out"
    assert run.main(["--cpu", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert f"alpha got ['--out', '{out_dir}']" in out and f"beta got ['--out', '{out_dir}']" in out
    assert "Hardware limits: FMA peak 1 threads x 2 FMA pipes" in out
    summary = next(out_dir.glob("summary-*.md")).read_text()
    assert "## Alpha" in summary and "| 1 |" in summary
    runs = json.loads(next(out_dir.glob("summary-*.json")).read_text())["runs"]
    assert [r["payload"]["results"][0]["shape"] for r in runs] == ["one"]

    assert run.main(["--cpu", "--no-write", "--suite", "beta", "--out", str(tmp_path / "no")]) == 0
    out = capsys.readouterr().out
    assert "beta got ['--out'" in out and "'--no-write']" in out and "alpha got" not in out
    assert not (tmp_path / "no").exists()


def test_bench_compare_puts_this_run_beside_an_earlier_one(capsys, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    _stand_in_suites(monkeypatch, {"alpha": ALPHA})
    assert run.main(["--cpu", "--out", str(tmp_path / "before")]) == 0
    earlier = next((tmp_path / "before").glob("summary-*.json"))
    # The same suite twice as fast on fusednn's side, torch unchanged: fusednn's time
    # halves (before / now = 2) and torch / fusednn doubles (ratio of ratios 2).
    monkeypatch.setattr(run, "load_suite", lambda name: _with_speed(name, 2.0))
    capsys.readouterr()
    assert run.main(["--cpu", "--out", str(tmp_path / "now"), "--compare", str(earlier)]) == 0
    out = capsys.readouterr().out
    assert "1 rows matched, 0 without a partner" in out
    assert "| alpha-cpu | one | 2.000 | 1.000 | 2.00 | 25% | 50% | 1.50 | 3.00 | 2.00 |" in out
    assert "## This run against" in next((tmp_path / "now").glob("summary-*.md")).read_text()


def _with_speed(name, speed):
    module = types.ModuleType(f"bench_{name}")
    exec(compile(ALPHA, f"bench_{name}", "exec"), module.__dict__)
    main = module.main
    module.main = lambda argv: main(argv + ["--speed", str(speed)])
    return module


def test_bench_runner_reports_a_failing_suite_and_goes_on(capsys, monkeypatch):
    pytest.importorskip("torch")
    _stand_in_suites(monkeypatch, {
        "broken": "def main(argv=None):\n    raise SystemExit('bench_broken needs something')\n",
        "fine": "def main(argv=None):\n    print('fine ran')\n"})
    assert run.main(["--cpu", "--no-write"]) == 1
    out = capsys.readouterr().out
    assert "fine ran" in out and "FAILED: broken (cpu)" in out
