"""The wheel: only treadle.runtime and treadle.storage (a namespace package), importable when installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 120
BUILD_FILES = ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in", "README", "LICENSE", "CHANGELOG")


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = subprocess.run(  # type: ignore[call-overload]
        args, capture_output=True, text=True, timeout=TIMEOUT, check=False, **kwargs
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done


def test_wheel_holds_only_the_namespaced_packages_and_installs(tmp_path: Path) -> None:
    """The wheel ships treadle/runtime/*, treadle/storage/* (with py.typed) and dist-info, nothing else;
    installed into a bare folder, `import treadle.runtime, treadle.storage` resolves there."""
    # Build from a copy of what the build reads: an in-tree build would leave build/ and
    # *.egg-info in the repo, and other tiers may be writing files there meanwhile.
    source = tmp_path / "src"
    source.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in ("runtime", "storage"):
            shutil.copytree(entry, source / entry.name, ignore=shutil.ignore_patterns("__pycache__"))
        elif entry.is_file() and entry.name.startswith(BUILD_FILES):
            shutil.copy2(entry, source / entry.name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("treadle-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
    dist_info = [n for n in names if n.split("/")[0].endswith(".dist-info")]
    code = [n for n in names if n not in dist_info]
    assert dist_info, "no dist-info in the wheel"
    strays = [n for n in code if not n.startswith(("treadle/runtime/", "treadle/storage/"))]
    assert strays == [], f"unexpected files in the wheel: {strays}"
    assert "treadle/__init__.py" not in names, "treadle must stay a namespace package"
    assert "treadle/runtime/py.typed" in code
    assert "treadle/storage/py.typed" in code
    for package_dir, package in (("runtime", "treadle/runtime"), ("storage", "treadle/storage")):
        expected = {
            f"{package}/{path.relative_to(ROOT / package_dir).as_posix()}"
            for path in (ROOT / package_dir).rglob("*.py")
        }
        shipped = {n for n in code if n.startswith(f"{package}/") and n.endswith(".py")}
        assert shipped == expected, f"{package}: wheel and source tree differ"

    target = tmp_path / "installed"
    pip_install = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--no-compile"]
    _run([*pip_install, "--target", str(target), str(wheel)])
    assert not (target / "runtime").exists()
    assert not (target / "storage").exists()

    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(target)
    # -I would drop PYTHONPATH; -s keeps user site-packages out. The venv's editable install
    # is still on sys.path, so the installed copy must come first to win.
    done = _run(
        [
            sys.executable,
            "-s",
            "-c",
            "import treadle.runtime, treadle.storage\n"
            "print(treadle.runtime.__file__)\n"
            "print(treadle.storage.__file__)",
        ],
        cwd=tmp_path,
        env=env,
    )
    runtime_file, storage_file = (Path(line).resolve() for line in done.stdout.split())
    assert runtime_file.is_relative_to(target.resolve()), runtime_file
    assert storage_file.is_relative_to(target.resolve()), storage_file
