"""pip inside a staged venv: retried while the version is not on the index yet, not otherwise."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hostd.upgrade.layout import Layout
from hostd.upgrade.stage import StageError, pip_install
from tests.relay_harness import wait_until

VERSION = "9.9.9"
PACKAGE = "hostd_retry_probe"


def _wheel(folder: Path) -> Path:
    """A minimal pure-Python wheel of PACKAGE, made by hand (no build backend needed)."""
    dist_info = f"{PACKAGE}-1.0.dist-info"
    files = {
        f"{PACKAGE}.py": "ANSWER = 42\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{PACKAGE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Layout:
    layout = Layout(tmp_path_factory.mktemp("root"))
    target = layout.version_dir(VERSION)
    target.parent.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
    return layout


def _installed(layout: Layout) -> bool:
    python = layout.version_dir(VERSION) / "bin" / "python"
    probe = subprocess.run([str(python), "-c", f"import {PACKAGE}"], capture_output=True)
    return probe.returncode == 0


async def test_a_version_not_on_the_index_yet_is_tried_again(
    layout: Layout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    pip_args = ["--no-index", "--find-links", str(wheelhouse)]
    caplog.set_level(logging.INFO, logger="hostd.upgrade")
    install = asyncio.create_task(
        pip_install(layout, VERSION, f"{PACKAGE}==1.0", pip_args, 3, 120, first_delay=0.5)
    )
    await wait_until(
        lambda: "pip found no" in caplog.text or install.done(), 120, "a first pip attempt"
    )
    assert not install.done(), "pip gave up at once"
    _wheel(wheelhouse)
    await asyncio.wait_for(install, 180)
    assert _installed(layout)


async def test_other_pip_failures_are_not_retried(
    layout: Layout, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hostd.upgrade")
    missing = tmp_path / "no-such-requirements.txt"
    with pytest.raises(StageError) as failure:
        await pip_install(layout, VERSION, f"-r{missing}", ["--no-index"], 3, 120, first_delay=60)
    assert "pip install" in str(failure.value)
    assert str(missing) in str(failure.value)
    assert "pip found no" not in caplog.text


async def test_a_version_never_published_fails_with_pips_message(
    layout: Layout, tmp_path: Path
) -> None:
    wheelhouse = tmp_path / "empty"
    wheelhouse.mkdir()
    pip_args = ["--no-index", "--find-links", str(wheelhouse)]
    with pytest.raises(StageError) as failure:
        await pip_install(layout, VERSION, "hostd-never==1.0", pip_args, 2, 120, first_delay=0.1)
    assert "No matching distribution found" in str(failure.value)
