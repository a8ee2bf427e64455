"""``rag completion bash``: the generated script, sourced in a real bash, completes subcommands,
nested subcommands, options and option choices from the live parser, and falls back to files."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rag.app.cli import build_parser, main
from rag.app.completion import script

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def complete(tmp_path, *words: str) -> list[str]:
    path = tmp_path / "rag.bash"
    path.write_text(script(build_parser(), "bash"))
    line = " ".join(f'"{w}"' for w in words)
    cmd = (
        f'source "{path}"; COMP_WORDS=({line}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); '
        '_rag_complete; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    out = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_subcommands_options_and_choices(tmp_path):
    assert complete(tmp_path, "rag", "ind") == ["index"]
    assert {"index", "search", "ask", "serve", "config", "completion"} <= set(
        complete(tmp_path, "rag", "")
    )
    assert complete(tmp_path, "rag", "config", "") == ["schema", "validate"]
    assert complete(tmp_path, "rag", "index", "notes", "--retriever", "") == [
        "bm25",
        "dense",
        "hybrid",
    ]
    assert complete(tmp_path, "rag", "search", "idx", "q", "--gr") == ["--group", "--group-depth"]
    assert complete(tmp_path, "rag", "search", "idx", "q", "--group", "") == ["max", "sum", "rrf"]
    assert complete(tmp_path, "rag", "completion", "") == ["bash", "zsh"]


def test_files_when_no_word_fits(tmp_path):
    (tmp_path / "notes").mkdir()
    assert complete(tmp_path, "rag", "index", "no") == ["notes"]


def test_cli_prints_the_script_and_rejects_other_shells(capsys):
    assert main(["completion", "zsh"]) == 0
    out = capsys.readouterr().out
    assert "bashcompinit" in out and "complete -o filenames -F _rag_complete rag" in out
    with pytest.raises(SystemExit) as e:
        main(["completion", "fish"])
    assert e.value.code == 2
