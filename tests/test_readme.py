"""The README's promises, and its docs/ pages': their commands exist and every option they name is real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = {path.name: path.read_text(encoding="utf-8") for path in sorted((REPO / "docs").glob("*.md"))}
TOLD_TEXT = "\n".join([README, *DOCS.values()])  # what users read: the README and the pages it links


def test_the_readme_links_every_docs_page_and_every_link_resolves():
    assert DOCS, "no docs/ pages"
    assert all(f"](docs/{name})" in README for name in DOCS), "a docs/ page the README does not link"
    for where, text in [(REPO / "README.md", README), *((REPO / "docs" / n, t) for n, t in DOCS.items())]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (where.parent / target).exists(), f"{where.name} links {target}, which does not exist"


def test_first_screen_has_the_two_commands():
    # The Space's front matter (between the first two `---` lines) is the Hub's, not the reader's first screen.
    shown = README.split("---\n", 2)[2] if README.startswith("---\n") else README
    first_screen = "\n".join(shown.splitlines()[:20])
    assert "make run" in first_screen and "make test" in first_screen
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text(encoding="utf-8")


# The commands the README and docs/ tell users to run, with the options each takes.
TOOLS = (
    ("models", "plan"),
    ("models", "prompt"),
    ("feedback_db", "export"),
    ("feedback_db", "leaderboard"),
    ("feedback_db", "upgrade"),
    ("feedback_db", "import"),
    ("feedback_db", "agreement"),
    ("feedback_db", "set-aside"),
    ("feedback_db", "raters", "add"),
    ("feedback_db", "raters", "list"),
    ("feedback_db", "raters", "revoke"),
    ("feedback_db", "release"),
)


def help_of(*command: str) -> str:
    return subprocess.run(
        [sys.executable, *command, "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout


def test_every_option_in_the_readme_exists():
    app_help = help_of("app.py")
    tools_help = "".join(help_of("-m", *command) for command in TOOLS)
    named = set(re.findall(r"`(--[a-z][a-z-]+)", TOLD_TEXT)) - {"--no-deps"}
    assert named, "the README names no options"
    missing = sorted(o for o in named if not re.search(rf"{o}\b", app_help + tools_help))
    assert not missing, f"README names options that do not exist: {missing}"
    table = README.split("## Options", 1)[1].split("##", 1)[0]
    in_table = set(re.findall(r"`(--[a-z][a-z-]+)", table))
    assert all(re.search(rf"{o}\b", app_help) for o in in_table), "the Options table lists a non-app option"
    undocumented = sorted(set(re.findall(r"(--[a-z][a-z-]+)", app_help)) - {"--help"} - in_table)
    assert not undocumented, f"app.py options missing from the README's table: {undocumented}"
    for command in TOOLS:  # every option of the commands users run is told somewhere
        options = set(re.findall(r"(--[a-z][a-z-]+)", help_of("-m", *command))) - {"--help"}
        assert not options - named, f"{' '.join(command)} options missing from the README: {sorted(options - named)}"


def test_readme_environment_variables_are_read_by_the_code():
    code = "".join(
        path.read_text(encoding="utf-8")
        for folder in ("models", "feedback_db", "playground", "tests")
        for path in (REPO / folder).rglob("*.py")
    ) + (REPO / "app.py").read_text(encoding="utf-8")
    for variable in set(re.findall(r"`((?:PLAYGROUND|GRADIO)_[A-Z_]+)`", TOLD_TEXT)):
        assert f'"{variable}"' in code, f"the README names {variable}, which no code reads"


def test_models_prompt_command_in_readme_works(tmp_path):
    messages = tmp_path / "messages.json"
    messages.write_text('[{"role": "user", "content": "What is the capital of France?"}]')
    run = subprocess.run(
        [sys.executable, "-m", "models", "prompt", "--lineup", "llama2", "--messages", str(messages)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant." in run.stdout
    assert run.stdout.count("=====") == 6  # a header for each of the three contenders


# Commands run on another machine (the GPU server), never in this environment.
ELSEWHERE = ("vllm ",)
TOLD = re.compile(r"`((?:hf|huggingface-cli|make|transformers|python3?|\.venv/bin/python) [^`]*)`")


def commands_told_to_users() -> list[str]:
    """Every command the README and the app's messages tell a person to run."""
    from models.lineups import WEIGHTS, weights_from_reference

    messages = [w.how_to_get for w in WEIGHTS.values()] + [weights_from_reference("org/name").how_to_get]
    told = TOLD.findall(TOLD_TEXT + "\n".join(messages))
    for block in re.findall(r"```bash\n(.*?)```", TOLD_TEXT, re.S):
        told += [line.split("#")[0].strip().removesuffix("&").strip() for line in block.splitlines()]
    found = []
    for command in told:
        command = re.sub(r"^(\w+=\S+ )+", "", command)  # leading VAR=value assignments
        if command and not command.startswith(("echo ", "cd ", *ELSEWHERE)):
            found.append(command)
    return found


def test_every_command_told_to_users_exists():
    commands = commands_told_to_users()
    assert any(c.startswith("hf auth login") for c in commands)  # the first step of every Llama 2 user
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    bin_dir = Path(sys.executable).parent  # beside the running interpreter, wherever its environment is
    for command in commands:
        words = command.split()
        if words[0] == "make":
            target = words[1] if len(words) > 1 and "=" not in words[1] else "run"
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"README runs `{command}`: no such target"
        elif words[0] in ("hf", "huggingface-cli", "transformers"):
            executable = bin_dir / words[0] if (bin_dir / words[0]).exists() else None
            assert executable, f"`{command}` is told to users, but {words[0]} is not installed"
            sub = [w for w in words[1:3] if not w.startswith("-") and "/" not in w and "$" not in w][:2]
            run = subprocess.run([str(executable), *sub, "--help"], capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, f"`{command}`: {words[0]} {' '.join(sub)} --help failed: {run.stderr[-300:]}"
        else:  # python: the script or module must be there
            module = words[words.index("-m") + 1] if "-m" in words else None
            script = next((w for w in words[1:] if w.endswith(".py")), None)
            assert module is None or (REPO / module.replace(".", "/")).exists(), command
            assert script is None or (REPO / script).exists(), command
