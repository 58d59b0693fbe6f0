"""The README: at most 12 KiB, every code block runs as pasted after `make demo`, every docs page is linked;
and the docs pages' generated sections (spliced in by the `make docs-*` targets) stay well-formed.

The blocks run in order, in one temporary directory holding what `make demo` leaves (artifacts/model.pt and
artifacts/model.onnx, from the same `lstm-pipeline train`/`export` commands on a smaller dataset), with the
venv's bin first on PATH, the way a reader pastes them one after the other, and every Python warning an
error (PYTHONWARNINGS=error); what each prints on stderr is kept and must hold no foreign output
(tests/foreign_output.py). A block preceded by
`<!-- background: ... URL -->` is started in the background (a server), waited for at URL, and stopped after
the last block. A block preceded by `<!-- not run: reason -->` is skipped, and must be listed in NOT_RUN.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

from benchmarks.docs_section import END, START, SectionError, splice
from benchmarks.docs_section import main as splice_main
from tests.foreign_output import foreign_lines, quiet_environment

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
BIN = Path(sys.executable).parent
MAX_BYTES = 12 * 1024
RUN = {"bash", "sh", "console", "python"}
SHOWN = {"text"}  # equations, layouts, transcripts: read, not run
# (how the block starts, why it is not run): a new exclusion is a decision, made here.
NOT_RUN = [
    ("pip install .", "installs into the current environment"),
    ("make demo", "make itself; the README test builds what make demo leaves, and CI runs make test"),
]
MARK = re.compile(r"<!--\s*(not run|background):\s*(.+?)\s*-->")
FENCE = re.compile(r"^```\s*([\w-]*)\s*$")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    mark: str | None = None  # "not run" | "background"
    note: str = ""

    def label(self) -> str:
        return f"README.md:{self.line} ({self.lang}: {self.code.splitlines()[0] if self.code else ''!r})"


def parse_blocks(text: str) -> list[Block]:
    blocks, lines, i, last = [], text.splitlines(), 0, ""
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            last = lines[i].strip() or last
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        mark = MARK.fullmatch(last)
        blocks.append(Block(start + 1, m.group(1), "\n".join(body) + "\n", *(mark.groups() if mark else ())))
        i, last = i + 1, ""
    return blocks


def indented_code_lines(text: str) -> list[int]:
    """Lines that open an indented (unfenced, language-less) code block."""
    found, in_fence, prev = [], False, ""
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and line.strip() and line.startswith(("    ", "\t")) and not prev.strip():
            found.append(n)
        prev = line
    return found


def commands(block: Block) -> str:
    if block.lang == "console":  # only the lines after a `$ ` prompt are commands
        return "\n".join(ln[2:] for ln in block.code.splitlines() if ln.startswith("$ ")) + "\n"
    return block.code


def argv(block: Block) -> list[str]:
    if block.lang == "python":
        return [str(BIN / "python"), "-c", block.code]
    return ["bash", "-e", "-o", "pipefail", "-c", commands(block)]


def environment() -> dict[str, str]:
    return quiet_environment(dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"))


STDERR: dict[str, tuple[str, bool]] = {}  # what each command run here printed on stderr -> (it, a server?)


def run_block(block: Block, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv(block), cwd=cwd, env=environment(), capture_output=True, text=True,
                          timeout=timeout)


def port_in_use(url: str) -> bool:
    u = urlparse(url)
    with socket.socket() as s:
        return s.connect_ex((u.hostname, u.port)) == 0


def wait_ready(proc: subprocess.Popen, url: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the background block exited ({proc.returncode}) before {url} answered:\n"
                        f"{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def blocks() -> list[Block]:
    return parse_blocks(README.read_text())


@pytest.fixture(scope="module")
def after_demo(tmp_path_factory) -> Path:
    """A directory holding what `make demo` leaves, made by the commands it runs (on a smaller series)."""
    work = tmp_path_factory.mktemp("after-make-demo")
    shutil.copytree(ROOT / "data", work / "data")  # a clone has it: the Python example reads it
    seed = (ROOT / "configs" / "seed.toml").read_text()
    config = tmp_path_factory.mktemp("config") / "tiny.toml"
    config.write_text(seed.replace("[data]\n", "[data]\nlength = 600\n", 1))
    for cmd in (["train", "--config", str(config), "--epochs", "1", "-o", "artifacts/model.pt"],
                ["export", "artifacts/model.pt", "-o", "artifacts/model.onnx"]):
        done = subprocess.run([str(BIN / "lstm-pipeline"), *cmd], cwd=work, env=environment(),
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"lstm-pipeline {' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
        STDERR[f"make demo: lstm-pipeline {cmd[0]}"] = (done.stderr, False)
    return work


@pytest.fixture(scope="module")
def readme_run(blocks, after_demo) -> Path:
    """Run every README block in order in `after_demo`; fails on the first block that fails."""
    background = []
    try:
        for block in blocks:
            if block.mark == "not run" or block.lang not in RUN:
                continue
            if block.mark == "background":
                url = re.search(r"https?://[^\s;,]+", block.note)
                assert url, f"{block.label()}: the background marker names no URL to wait for"
                if port_in_use(url.group()):
                    pytest.fail(f"{url.group()} is already taken; stop what listens there and rerun")
                log = after_demo / f"background-{block.line}.log"
                with log.open("w") as out:
                    proc = subprocess.Popen(argv(block), cwd=after_demo, env=environment(), stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
                background.append((proc, block, log))
                wait_ready(proc, url.group(), log)
                continue
            done = run_block(block, after_demo)
            assert done.returncode == 0, (f"{block.label()} failed (exit {done.returncode}):\n"
                                          f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
            STDERR[block.label()] = (done.stderr, False)
    finally:
        for proc, block, log in background:
            stop(proc)
            STDERR[block.label()] = (log.read_text(), True)  # its stdout too: a server prints nothing there
    return after_demo


def test_readme_is_at_most_12_kib():
    size = len(README.read_bytes())
    assert size <= MAX_BYTES, f"README.md is {size} bytes; move detail to docs/ (limit {MAX_BYTES})"


def test_every_code_block_is_fenced_with_a_known_language(blocks):
    assert not indented_code_lines(README.read_text()), "fence these blocks (```bash, ```text, ...)"
    unknown = [b.label() for b in blocks if b.lang not in RUN | SHOWN and b.mark != "not run"]
    assert not unknown, f"give these a language the test runs {sorted(RUN)} or shows {sorted(SHOWN)}"


def test_blocks_not_run_are_the_listed_ones(blocks):
    skipped = [b for b in blocks if b.mark == "not run"]
    for b in skipped:
        print(f"not run: {b.label()}: {b.note}")
    assert len(skipped) == len(NOT_RUN), [(b.label(), b.note) for b in skipped]
    for b, (start, reason) in zip(skipped, NOT_RUN):
        assert b.code.startswith(start) and b.note == reason, (b.label(), b.note)


def test_every_readme_block_runs_after_make_demo(blocks, readme_run):
    ran = [b for b in blocks if b.mark != "not run" and b.lang in RUN]
    assert {b.lang for b in ran} >= {"bash", "python"} and any(b.mark == "background" for b in ran)
    assert (readme_run / "artifacts" / "model-serve.onnx").exists()


def test_readme_commands_print_no_warning_or_foreign_log_line(readme_run):
    """Warnings are errors in these runs, so one would have failed its block; a library's log line (or a
    warning a library caught and printed) shows here."""
    assert any(server for _, server in STDERR.values()) and len(STDERR) >= 6
    foreign = {label: lines for label, (err, server) in STDERR.items() if (lines := foreign_lines(err, server))}
    assert not foreign, foreign


@pytest.mark.parametrize("lang, typo, expected", [
    ("bash", ("--stateful", "--statefull"), ("No such option", "--statefull")),
    ("python", ("lengths=", "lenghts="), ("unexpected keyword argument 'lenghts'",)),
])
def test_a_typo_in_a_block_fails(blocks, readme_run, lang, typo, expected):
    block = next(b for b in blocks if b.lang == lang and typo[0] in b.code and b.mark is None)
    mutant = Block(block.line, lang, block.code.replace(typo[0], typo[1], 1))
    done = run_block(mutant, readme_run)
    assert done.returncode != 0 and all(e in done.stderr for e in expected), done.stderr[-2000:]


def test_readme_links_every_docs_page_and_each_link_resolves():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert not [link for link in links if "://" not in link and not (ROOT / link).exists()]
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert pages - set(links) == set(), "link these pages from the README"


def test_docs_generated_sections_name_a_make_target_and_end():
    makefile = (ROOT / "Makefile").read_text()
    found = {}
    for page in DOCS.glob("*.md"):
        text = page.read_text()
        for target in re.findall(r"<!-- generated by make (\S+) -->", text):
            assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"{page.name}: no make {target}"
            assert splice(text, target, "x").count(END) == text.count(END), page.name
            found[page.name] = target
    assert {"benchmarks.md", "forms.md", "runtimes.md", "experiments.md", "serving.md"} <= set(found)


PAGE = f"# Page\n\nintro\n\n{START.format(target='docs-x')}\nold table\n{END}\n\nafter {END}\n"


def test_splice_replaces_only_the_marked_section():
    new = splice(PAGE, "docs-x", "| a |\n|---|\n| 1 |\n\n")
    assert new == f"# Page\n\nintro\n\n{START.format(target='docs-x')}\n| a |\n|---|\n| 1 |\n{END}\n\nafter {END}\n"
    assert splice(new, "docs-x", "| a |\n|---|\n| 1 |") == new  # a second run changes nothing
    fenced = splice(PAGE, "docs-x", "runner  PASS\n", fence="text")
    assert f"{START.format(target='docs-x')}\n```text\nrunner  PASS\n```\n{END}" in fenced


@pytest.mark.parametrize("page, block, message", [
    ("no markers\n", "x", "exactly one '<!-- generated by make docs-x -->' line, found 0"),
    (PAGE + PAGE, "x", "found 2"),
    (f"{START.format(target='docs-x')}\nno end\n", "x", "no '<!-- end generated -->'"),
    (PAGE, f"x\n{END}\n", "contains a marker comment"),
])
def test_splice_refuses_broken_markers(page, block, message):
    with pytest.raises(SectionError, match=re.escape(message)):
        splice(page, "docs-x", block)


def test_splice_command_updates_the_page_or_says_why(tmp_path, capsys):
    page, block = tmp_path / "page.md", tmp_path / "table.md"
    page.write_text(PAGE)
    block.write_text("| new |\n")
    assert splice_main([str(page), "docs-x", str(block)]) == 0
    assert f"{START.format(target='docs-x')}\n| new |\n{END}" in page.read_text()
    assert splice_main([str(page), "docs-y", str(block)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "page.md" in err and "docs-y" in err
    assert "| new |" in page.read_text()  # a refused splice leaves the page as it was
