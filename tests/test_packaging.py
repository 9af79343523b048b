"""A `pip install .` (a wheel, not an editable install) migrates, serves and archives from any folder:
the migrations ship inside the package."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from receiver import migrate
from receiver.config import SETTINGS
from tests.processes import stop_group, wait_ready

ROOT = Path(__file__).resolve().parent.parent


def _tracked(*folders: str) -> list[str]:
    """The checkout's files under `folders`, committed or not, less those git ignores."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *folders],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted({path for path in listed if (ROOT / path).is_file()})


def _in_wheel(path: str) -> str:
    """Where a tracked file lands in the wheel (migrations/ becomes receiver/migrations/)."""
    return "receiver/" + path if path.startswith("migrations/") else path


def test_pyproject_lists_every_package_and_data_file():
    """setuptools packs only what pyproject lists: a new subpackage or template must be named there."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages, package_dir, data = tool["packages"], tool.get("package-dir", {}), tool.get("package-data", {})
    folders = {"migrations": "receiver.migrations"}
    assert package_dir == {name: folder for folder, name in folders.items()}
    for path in _tracked("receiver", "migrations"):
        parent = str(Path(path).parent)
        top, _, rest = parent.partition("/")
        package = ".".join([folders.get(top, top), *rest.split("/")]) if rest else folders.get(top, top)
        if path.endswith(".py"):
            assert package in packages, f"{path}: package {package} is not in pyproject's packages"
        else:
            patterns = data.get(package, [])
            assert any(fnmatch.fnmatch(Path(path).name, p) for p in patterns), f"{path}: not in package-data"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with receiver installed from a wheel built from this checkout.

    The wheel is installed with `--no-deps --no-index`, and the environment sees this test run's
    installed dependencies through a .pth file: no network, and the package itself comes from the
    wheel alone (the checkout is not on its path; the editable install's hook is not loaded).
    """
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy of the checkout's files: no stale build/ folder can fill gaps
    for path in _tracked():
        (source / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, source / path)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(work),
            ".",
        ],
        cwd=source,
        check=True,
        timeout=300,
    )
    (wheel,) = work.glob("receiver-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = [path for path in _tracked("receiver", "migrations") if _in_wheel(path) not in names]
    assert missing == [], f"not in the wheel: {missing}"
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q"]
        + ["--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv


@pytest.fixture
def elsewhere(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Another folder to run from, and an environment with none of receiver's settings."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    env["RECEIVER_ENV_FILE"] = str(tmp_path / "no.env")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'data' / 'receiver.db'}"
    return folder, env


def _run(venv: Path, folder: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "receiver"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_wheel_install_migrates_from_another_folder(installed, elsewhere, tmp_path):
    folder, env = elsewhere
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import receiver, receiver.migrate as m; print(m.migrations_dir())",
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed), where  # the wheel's copy, not the checkout's

    refused = _run(installed, folder, env, "sources", "list")
    assert refused.returncode == 1 and "run `receiver db upgrade`" in refused.stderr

    result = _run(installed, folder, env, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(tmp_path / "data" / "receiver.db") as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision == migrate.head_revision()  # the checkout's head
    assert _run(installed, folder, env, "sources", "list").returncode == 0

    archives = tmp_path / "archives"
    exported = _run(
        installed, folder, env, "archive", "export", "--before", "2026-01-01", "--out", str(archives)
    )
    assert exported.returncode == 0, exported.stderr
    (manifest,) = archives.glob("*/manifest.json")
    assert json.loads(manifest.read_text())["schema"] == revision
    verified = _run(installed, folder, env, "archive", "verify", str(archives))
    assert verified.returncode == 0, verified.stderr
    assert os.listdir(folder) == []


@pytest.mark.slow
def test_a_wheel_install_serves_and_is_ready(installed, elsewhere):
    folder, env = elsewhere
    env["VAR_DIR"] = str(folder.parent / "var")
    env["WEB_CONCURRENCY"] = "1"
    port = _free_port()
    process = subprocess.Popen(
        [str(installed / "bin" / "receiver"), "run", "--bind", f"127.0.0.1:{port}"],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready = wait_ready(process, f"http://127.0.0.1:{port}/readyz", lambda: "receiver run exited")
        assert ready.json()["revision"] == migrate.head_revision()
    finally:
        stop_group(process)
    assert process.returncode == 0
