"""`rag chat` driven as a person would: typed into a tmux pane (send-keys) and read back from the
screen (capture-pane). The fast test scripts the generator; the slow one runs SmolLM2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

DRIVER = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
from scripted_generators import Scripted, rule_replies
from rag.app.chat_cli import cmd_chat
from rag.app.cli import build_parser
args = build_parser().parse_args(["chat", "--retriever", "bm25", "--mode", "condense"])
sys.exit(cmd_chat(args, generator=Scripted(rule_replies)))
"""


class Pane:
    """One tmux session on a private server socket."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.sock = f"ragnodes-test-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "chat",
            "-x",
            "160",
            "-y",
            "50",
            "-c",
            str(cwd),
            f"{command}; echo EXITED=$?; sleep 30",
            env=env,
        )

    def _tmux(self, *args: str, env: dict | None = None) -> str:
        out = subprocess.run(
            ["tmux", "-L", self.sock, *args], capture_output=True, text=True, env=env, check=True
        )
        return out.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", "chat")

    def type(self, line: str) -> None:
        self._tmux("send-keys", "-t", "chat", "-l", line)
        self._tmux("send-keys", "-t", "chat", "Enter")

    def wait_for(self, text: str, count: int = 1, timeout: float = 120) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            screen = self.screen()
            if screen.count(text) >= count:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} x{count} never appeared; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


@pytest.fixture()
def pane_factory():
    panes: list[Pane] = []

    def make(command: str, cwd: Path) -> Pane:
        panes.append(Pane(command, cwd))
        return panes[-1]

    yield make
    for p in panes:
        p.close()


def test_chat_in_tmux_with_a_scripted_model(tmp_path, pane_factory):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(ROOT / "tests"), root=str(ROOT)))
    pane = pane_factory(f"{sys.executable} {driver}", tmp_path)
    pane.wait_for("you> ", timeout=180)
    pane.type("Tell me about Saturn.")
    pane.wait_for("cited:")
    pane.type("What is its biggest moon?")
    screen = pane.wait_for("cited:", count=2)
    assert "rag> From the first source" in screen
    pane.type("/query")
    used = "What is Saturn's biggest moon?"
    screen = pane.wait_for(f"condense {used!r} (rewritten by the model)")
    assert f"search {used!r} -> " in screen
    pane.type("/sources")
    screen = pane.wait_for("*[1] ")
    pane.type(f"/save {tmp_path / 'conv.json'}")
    pane.wait_for("saved to")
    saved = json.loads((tmp_path / "conv.json").read_text())
    assert [t["question"] for t in saved["turns"]] == [
        "Tell me about Saturn.",
        "What is its biggest moon?",
    ]
    assert saved["turns"][1]["query"] == "What is Saturn's biggest moon?"
    cited = saved["turns"][1]["citations"][0]["document_id"]
    assert f"*[1] {cited}:" in screen  # the starred source is the one the answer cited
    pane.type("/quit")
    pane.wait_for("EXITED=0")


@pytest.mark.slow
def test_chat_in_tmux_with_smollm2(tmp_path, pane_factory):
    """The real command on the embedded defaults: streamed SmolLM2 answers with citations."""
    cmd = f"{sys.executable} -m rag.app.cli chat --retriever bm25"  # this checkout's rag, from ROOT
    pane = pane_factory(f"{cmd} --max-new-tokens 40", ROOT)
    pane.wait_for("you> ", timeout=300)
    pane.type("Which planet has the Great Red Spot?")
    pane.wait_for("cited:", timeout=300)
    pane.type("How many moons does it have?")
    pane.wait_for("cited:", count=2, timeout=300)
    pane.type("/query")
    screen = pane.wait_for("  condense ")
    pane.type("/quit")
    pane.wait_for("EXITED=0")
    assert screen.count("rag> ") == 2
