"""The `fusednn` command: info, demo (argument errors, missing packages, --device cuda
without a GPU, a one-epoch run of every demo writing its PNG) and bench (argument
errors, missing PyTorch, --gpu without a GPU, no checkout). Runs in seconds: the
demo run uses --epochs 1; the learning itself is tested in test_learning_*.py."""
import importlib.util
import pathlib
import subprocess
import sys

import pytest

import fusednn.backend as backend
from fusednn import cli, demos
from fusednn.demos import _common

REPO = pathlib.Path(__file__).resolve().parents[1]
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

def test_bench_bad_arguments_come_from_the_runner(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    status, _, err = run_cli(capsys, "bench", "--fast")
    assert status == 2
    assert "fusednn bench: error: unrecognized arguments: --fast" in err
    status, _, err = run_cli(capsys, "bench", "--suite", "resnet")
    assert status == 2 and "invalid choice: 'resnet'" in err


def test_bench_lists_the_suites(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    status, out, _ = run_cli(capsys, "bench", "--list")
    assert status == 0
    listed = {line.split()[0] for line in out.strip().splitlines()}
    assert listed == {p.stem[len("bench_"):] for p in (REPO / "benchmarks").glob("bench_*.py")}


@pytest.mark.skipif(backend.has_cuda(), reason="a GPU is usable here")
def test_bench_gpu_without_gpu_is_a_clear_error(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(REPO)
    status, out, err = run_cli(capsys, "bench", "--gpu")
    assert status == 1
    assert "--gpu needs a usable GPU" in err and "--cpu" in err
    assert "=====" not in out  # no suite ran


def test_bench_without_torch_names_the_test_extra(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real_find_spec(name, *a))
    status, out, err = run_cli(capsys, "bench", "--cpu")
    assert status == 1
    assert "PyTorch" in err and 'pip install ".[test]"' in err
    assert "=====" not in out


def test_bench_outside_a_checkout_says_where_the_benchmarks_are(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    # As for a regular install: the package's folder has no benchmarks beside it.
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "fusednn" / "cli.py"))
    status, _, err = run_cli(capsys, "bench")
    assert status == 1
    assert "source checkout" in err and "benchmarks/run.py" in err


def _bench_runner(folder, monkeypatch, suites):
    """benchmarks/run.py loaded as a module whose suites are the bench_*.py files in folder;
    sys.path and sys.modules get back their state after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in suites:
        monkeypatch.setitem(sys.modules, f"bench_{name}", None)  # restored: absent
        del sys.modules[f"bench_{name}"]
    spec = importlib.util.spec_from_file_location("bench_runner_under_test",
                                                  REPO / "benchmarks" / "run.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    runner.HERE, runner.RESULTS_DIR = folder, folder / "results"
    return runner


def test_bench_runner_runs_every_suite_and_summarises_its_tables(capsys, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    # Two stand-in suites: main(argv) writing a table, and an older main() reading sys.argv.
    (tmp_path / "bench_alpha.py").write_text(
        "import pathlib, sys\n"
        "def main(argv=None):\n"
        "    print('alpha got', argv)\n"
        "    if '--no-write' not in argv:\n"
        "        out = pathlib.Path(__file__).parent / 'results'\n"
        "        out.mkdir(exist_ok=True)\n"
        "        (out / 'alpha-cpu-2026-01-01.md').write_text('# Alpha\\n\\n| a |\\n|---|\\n| 1 |\\n')\n")
    (tmp_path / "bench_beta.py").write_text(
        "import sys\n"
        "def main():\n"
        "    print('beta got', sys.argv[1:])\n")
    runner = _bench_runner(tmp_path, monkeypatch, ["alpha", "beta"])
    assert runner.suite_names() == ["alpha", "beta"]

    assert runner.main(["--cpu"]) == 0
    out = capsys.readouterr().out
    assert "alpha got []" in out and "beta got []" in out
    summary = next((tmp_path / "results").glob("summary-*.md")).read_text()
    assert "## Alpha" in summary and "| 1 |" in summary

    assert runner.main(["--cpu", "--no-write", "--suite", "beta"]) == 0
    out = capsys.readouterr().out
    assert "beta got ['--no-write']" in out and "alpha got" not in out


def test_bench_runner_reports_a_failing_suite_and_goes_on(capsys, monkeypatch, tmp_path):
    pytest.importorskip("torch")
    (tmp_path / "bench_broken.py").write_text(
        "def main(argv=None):\n    raise SystemExit('bench_broken needs something')\n")
    (tmp_path / "bench_fine.py").write_text("def main(argv=None):\n    print('fine ran')\n")
    runner = _bench_runner(tmp_path, monkeypatch, ["broken", "fine"])
    assert runner.main(["--cpu", "--no-write"]) == 1
    out = capsys.readouterr().out
    assert "fine ran" in out and "FAILED: broken (cpu)" in out
