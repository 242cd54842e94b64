"""The project installs as a package: one dependency list, data inside the wheel, a working command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import storydiffusion
from storydiffusion.resources import DATA_FOLDERS, data_path, data_root

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CHECKOUT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((CHECKOUT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements_txt() -> list[Requirement]:
    lines = (CHECKOUT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    return [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]


def _canonical(requirements: list[Requirement]) -> dict[str, str]:
    return {re.sub(r"[-_.]+", "-", r.name).lower(): str(r.specifier) for r in requirements}


def test_requirements_txt_and_pyproject_list_the_same_dependencies():
    declared = _canonical([Requirement(text) for text in _pyproject()["project"]["dependencies"]])
    assert declared == _canonical(_requirements_txt())


def test_console_script_is_the_cli_entry_as_python_m_runs_it():
    assert _pyproject()["project"]["scripts"] == {"storydiffusion": "storydiffusion.cli:entry"}
    assert "entry()" in (CHECKOUT / "storydiffusion" / "__main__.py").read_text(encoding="utf-8")


def test_version_has_one_source():
    assert _pyproject()["tool"]["hatch"]["version"]["path"] == "storydiffusion/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", storydiffusion.__version__)


def test_wheel_maps_every_data_folder_into_the_package():
    include = _pyproject()["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include == {folder: f"storydiffusion/_data/{folder}" for folder in DATA_FOLDERS}


def test_data_is_found_through_resources():
    assert data_path("layouts", "manga.yaml").is_file()
    assert data_path("configs", "models.yaml").is_file()
    assert data_path("assets", "fonts", "ComicNeue-Bold.otf").is_file()
    assert data_path("examples", "lighthouse.yaml").is_file()
    assert data_root() == CHECKOUT  # from a checkout the data stays where contributors edit it
    with pytest.raises(ValueError, match="unknown data folder 'secrets'"):
        data_path("secrets")


def test_no_code_edits_sys_path():
    offenders = []
    for path in [*CHECKOUT.glob("*.py"), *(CHECKOUT / "storydiffusion").rglob("*.py")]:
        offenders += [path.name for line in path.read_text(encoding="utf-8").splitlines() if "sys.path" in line]
    for folder in ("tests", "benchmarks"):
        for path in (CHECKOUT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"sys\.path\.(insert|append)", text):
                offenders.append(path.name)
    assert offenders == []


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str | Path]:
    """The wheel built from this checkout, installed into a folder of its own (no dependencies)."""
    build = tmp_path_factory.mktemp("wheel")
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
            str(build),
            str(CHECKOUT),
        ],
        check=True,
        timeout=300,
    )
    wheel = next(build.glob("storydiffusion-*.whl"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    return {"wheel": wheel, "target": target, "env": env, "script": target / "bin" / "storydiffusion"}


@pytest.mark.slow
def test_wheel_carries_layouts_configs_fonts_and_examples(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for folder in DATA_FOLDERS:
        for path in (CHECKOUT / folder).rglob("*"):
            if path.is_file():
                assert f"storydiffusion/_data/{path.relative_to(CHECKOUT).as_posix()}" in names, path
    assert "storydiffusion/resources.py" in names
    assert not any(name.startswith(("tests/", "app.py")) for name in names)


@pytest.mark.slow
def test_installed_command_generates_composes_and_animates_from_another_folder(installed, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    story = work / "story.yaml"
    story.write_bytes((CHECKOUT / "examples" / "two_friends.yaml").read_bytes())

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(installed["script"]), *args],
            cwd=work,
            env=installed["env"],
            capture_output=True,
            text=True,
            timeout=600,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import storydiffusion.resources as r; print(r.data_root())"],
        cwd=work,
        env=installed["env"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == Path(installed["target"]) / "storydiffusion" / "_data"

    generated = run("generate", "story.yaml", "--out", "x", "--model", "tiny-sdxl", "--steps", "2", "--quiet")
    assert generated.returncode == 0, generated.stderr
    assert (work / "x" / "story.json").is_file() and (work / "x" / "panels" / "panel_001.png").is_file()

    composed = run("compose", "x", "--layout", "manga", "--export", "pdf")
    assert composed.returncode == 0, composed.stderr
    assert (work / "x" / "pages" / "page_01.png").is_file() and (work / "x" / "comic.pdf").is_file()

    animated = run("animate", "x", "--from", "1", "--to", "2", "--model", "tiny", "--frames", "4", "--quiet")
    assert animated.returncode == 0, animated.stderr
    assert (work / "x" / "video" / "01-02.mp4").is_file() and (work / "x" / "video" / "01-02.gif").is_file()

    usage = run("layout-that-does-not-exist")
    assert usage.returncode == 2 and usage.stderr.startswith("error: argument command: invalid choice")


def test_python_m_storydiffusion_is_the_same_command():
    via_module = subprocess.run(
        [sys.executable, "-m", "storydiffusion", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    assert via_module.stdout.startswith("usage: storydiffusion ")
    assert "generate" in via_module.stdout and "compose" in via_module.stdout and "animate" in via_module.stdout


def test_ci_runs_exactly_the_readme_test_command():
    readme = (CHECKOUT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    test_command = block[1].split("#")[0].strip()
    assert "pytest" in test_command
    ci = (CHECKOUT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_command in [line.strip() for line in ci]
    assert block[0].split("#")[0].strip().endswith("python app.py")  # the first command starts the studio
