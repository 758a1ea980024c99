"""A feature whose extra is not installed fails with one line naming the extra, and the core does not need them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

#: (what is imported or run, a module of its extra, the extra)
FEATURES = [
    ("import qstore.ionq.server", "starlette", "server"),
    ("import qstore.ionq.server", "uvicorn", "server"),
    ("import qstore.distributed", "distributed", "dask"),
    ("import qstore.ml.sweep", "dask", "dask"),
    ("import qstore.ml.torch_layer", "torch", "torch"),
    ("from qstore.data import digits; digits(3, 8)", "sklearn", "digits"),
]


def run_without(module: str, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which ``module`` cannot be imported."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules[{module!r}] = None  # what an import of a package that is not installed does
        {code}
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("code", "module", "extra"), FEATURES)
def test_a_missing_extra_is_named(code, module, extra):
    result = run_without(module, code)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("qstore._extras.MissingExtraError") and f"pip install 'qsim-core[{extra}]'" in last


@pytest.mark.parametrize(
    ("argv", "module", "extra"),
    [(["serve", "--port", "0"], "starlette", "server"), (["sweep", "none.toml"], "distributed", "dask"),
     (["compare", "--circuits", "1"], "uvicorn", "server"),
     (["train", "--dataset", "digits:3,8", "--epochs", "1"], "sklearn", "digits")],
)
def test_a_command_whose_extra_is_missing_says_so_in_one_line(tmp_path, argv, module, extra):
    result = run_without(module, f"from qstore.cli import main; sys.exit(main({argv + ['--output', str(tmp_path)]!r}))"
                         if argv[0] != "serve" else f"from qstore.cli import main; sys.exit(main({argv!r}))")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pip install 'qsim-core[{extra}]'" in lines[0], result.stderr


def test_the_core_imports_none_of_the_extras():
    extras = ("starlette", "uvicorn", "dask", "distributed", "torch", "sklearn")
    code = textwrap.dedent(f"""
        import sys
        import qsim_core, qstore.cli, qstore.data, qstore.ml, qstore.ionq, qstore.execution
        loaded = sorted(name for name in {extras!r} if name in sys.modules)
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
