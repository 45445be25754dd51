"""The public API: every listed name resolves, one import path per object, and the README's
Python example runs as written."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.conftest import REPO


@pytest.mark.parametrize("package", ["dyncdi_hpc", "dyncdi_hpc.config", "dyncdi_hpc.physics"])
def test_every_public_name_resolves_and_is_listed(package):
    module = importlib.import_module(package)
    names = [n for n in module.__all__ if n != "__version__"]
    assert names == sorted(set(names), key=names.index)  # no repeats
    for name in names:
        value = getattr(module, name)
        assert value is not None, name
        assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018


def test_top_level_and_package_lists_agree_on_the_defining_object():
    import dyncdi_hpc
    import dyncdi_hpc.config
    import dyncdi_hpc.physics

    for name in set(dyncdi_hpc.__all__) & set(dyncdi_hpc.physics.__all__):
        assert getattr(dyncdi_hpc, name) is getattr(dyncdi_hpc.physics, name)
    for name in set(dyncdi_hpc.__all__) & set(dyncdi_hpc.config.__all__):
        assert getattr(dyncdi_hpc, name) is getattr(dyncdi_hpc.config, name)


def test_the_readme_python_example_runs(capsys):
    text = (REPO / "README.md").read_text()
    section = text.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    exec(compile(code, "README.md (Python API)", "exec"), {})
    printed = capsys.readouterr().out
    rms = float(re.search(r"phase RMS ([0-9.]+) rad", printed).group(1))
    assert rms < 0.2, printed
