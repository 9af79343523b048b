"""The README as a new user follows it: its first steps, pasted into a fresh shell while its first
command runs, and a Commands table that names every command."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from receiver.cli import cli
from receiver.config import SETTINGS
from tests.processes import stop_group, wait_ready
from tests.test_cli import leaves

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MESSAGE_ID = "b34e35ad-fe34-4a8b-977c-b21cd76cd7d6:1"


def section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"no section {title!r} in the README"
    return match.group(1)


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M)


def test_the_commands_table_names_every_command():
    cells = [
        line.split(" | ")[0] for line in section("Commands").splitlines() if line.startswith("| `receiver")
    ]
    for path, _ in leaves(cli):
        group, *sub = path
        named = [cell for cell in cells if re.search(rf"`receiver {group}\b", cell)]
        if sub:  # `receiver sources list` / `rotate NAME`: the group once, then each command
            named = [cell for cell in named if re.search(rf"(`receiver {group} |`){sub[0]}\b", cell)]
        assert named, f"the README's Commands table does not name `receiver {' '.join(path)}`"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _paste(script: str, folder: Path, env: dict[str, str]) -> list[dict]:
    """Run the block as a fresh bash would; the JSON answers it printed, in order."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert result.stderr == ""
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_the_first_steps_work_when_pasted_and_pasted_again(tmp_path):
    first = shell_blocks(README.split("\n## ", 1)[0])
    assert first[0].strip().endswith("&& .venv/bin/receiver run"), first[0]
    steps = "\n".join(shell_blocks(section("First steps")))
    assert "127.0.0.1:8000" in steps
    expected = [json.loads(line[2:]) for line in steps.splitlines() if line.startswith("# {")]
    assert expected and expected[0]["message"] == "stored"

    # The README's folder after its first command: a .venv (this test run's) and nothing else.
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / ".venv").symlink_to(Path(sys.prefix))
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    for name in ("SECRET", "APIKEY", "BIND"):
        env.pop(name, None)
    env["RECEIVER_ENV_FILE"] = str(tmp_path / "no.env")
    port = _free_port()
    log = tmp_path / "run.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [".venv/bin/receiver", "run", "--bind", f"127.0.0.1:{port}"],
            cwd=folder,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/readyz", log.read_text)
        script = steps.replace("127.0.0.1:8000", f"127.0.0.1:{port}")

        stored, message = _paste(script, folder, env)
        assert stored == expected[0]
        assert (message["id"], message["status"]) == (MESSAGE_ID, "delivered")
        assert [event["provider_status"] for event in message["events"]] == ["DELIVRD"]

        time.sleep(1.1)  # the API key's name carries the second; no one pastes twice within one
        again, message_again = _paste(script, folder, env)
        assert again == {**expected[0], "message": "duplicate"}
        assert message_again == message
    finally:
        stop_group(process)
    started = log.read_text()
    assert "receiver: no sources yet" in started
    assert "receiver: PROVIDER_ACCESS_TOKEN is not set" in started
