"""The README's "Add your own model" section, run as a reader would: its few lines of torch,
TensorFlow and ONNX make artifacts that its `maas add-model` commands turn into models, and
the printed client example it shows is the one the command prints."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

from maas.paths import PROJECT_ROOT
from tests.cli_calls import maas


def section() -> str:
    text = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Add your own model")
    return text[start : text.index("\n## ", start + 1)]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_readme_examples_become_served_models(tmp_path):
    text = section()
    python = blocks(text, "python")
    makers, printed = python[:3], python[3]
    for number, code in enumerate(makers):
        script = tmp_path / f"make_{number}.py"  # saved and run, as torch.jit.script needs
        script.write_text(code, encoding="utf-8")
        made = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr[-2000:]
    commands = [
        line
        for block in blocks(text, "bash")
        for line in block.splitlines()
        if line.startswith("maas add-model ") and "ARTIFACT" not in line and "--url" not in line
    ]
    assert len(commands) == 3, commands
    repository = tmp_path / "repo"
    repository.mkdir()
    outputs = {}
    for command in commands:
        arguments = shlex.split(command)[1:]
        runtime = "ngc-24.10" if arguments[1].endswith(".onnx") else "local"
        result = maas(*arguments, "--repository", str(repository), "--runtime", runtime,
                      cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        name = arguments[arguments.index("--name") + 1]
        assert (repository / name / "1" / "model_card.json").is_file()
        outputs[name] = result.stdout
    assert "ngc-24.10 onnxruntime" in outputs["danger"]
    shown = outputs["danger"].split("Call it from Python")[1].split("or with curl:")[0]
    assert shown.split("\n", 1)[1].strip() == printed.strip()
