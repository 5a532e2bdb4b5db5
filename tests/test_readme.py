"""The README copies and pastes: every command block in README.md is run, in order.

Convention for the fenced blocks of README.md (checked by
``test_every_block_is_run_or_skipped_with_a_reason``):

- ```` ```sh ```` is what a user types in a shell at the repository root, and
  is run: each block as one ``bash -euo pipefail`` script, so a failing command
  (or a failing command in a pipe) fails its step. A ```` ```sh ```` block that
  cannot run here (production hosts, minutes of benchmarks) must be listed in
  ``SKIPPED_BLOCKS`` with the reason, which the step prints as its skip reason;
  a block nobody listed is run, so a new block cannot silently escape.
- ```` ```python ```` is a snippet run with ``.venv/bin/python`` from the
  repository root while ``make run`` serves. A ``print(...)  # text`` line
  states its output: the printed line must be ``text`` or the start of
  ``text`` before a colon (``[]: registration's grant ...``).
- A shell line ending in ``# "text"`` states that ``text`` is in the output.
- Every other language is not run and is listed in ``NOT_RUN_LANGUAGES`` with
  the reason (configuration for another program, output); a block with no
  language or an unlisted one fails the inventory test.

Where the steps run. A temporary directory laid out like a checkout: every
top-level entry of the repository is symlinked into it (``.venv``,
``Makefile``, ``vault``, ...) except ``var/``, so ``var/vault`` (the data
directory ``make run`` uses), receipts and exports are the test's own. The
server is the README's first command, ``make run``, started in the background
and stopped with SIGTERM at the end. Two things differ from what a user types,
both stated here:

- ``make run`` gets ``-o .venv/.installed-stamp`` (use the venv as it is: the
  test must not reinstall the shared venv) and ``PII_VAULT_LISTEN=127.0.0.1:0``
  (documented setting: any free port, which the server prints);
- every step gets ``PII_VAULT_TARGET=localhost:PORT`` (documented setting, read
  by the caller commands), and the one fixed rewrite of the block text:
  ``localhost:50051`` becomes ``localhost:PORT`` (the ``buf curl`` URLs and the
  Python snippet name the address literally).

``make test`` is not run (it would run this test inside itself). ``buf curl``
steps need ``npx`` able to fetch the ``@bufbuild/buf`` version the README
names; without it they are skipped with that reason, unless
``VAULT_REQUIRE_README_TOOLS=1`` (set by CI), which makes that a failure.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from vault_server import clean_env

from vault.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

RUN_LANGUAGES = {"sh", "python"}
NOT_RUN_LANGUAGES = {
    "hcl": "an OpenBao/HashiCorp Vault policy for the Transit provider, not a command",
    "text": "program output, not a command",
    "console": "program output, not a command",
    "toml": "a configuration file, not a command",
    "json": "a document, not a command",
}
# ```sh blocks that are not run, by their first command line (a prefix of it).
SKIPPED_BLOCKS = {
    "pii-vault serve --data-dir /data --listen 0.0.0.0:50051": (
        "production example: /data and the PostgreSQL hosts db and keydb do not exist here "
        "(its flags are parsed by test_every_command_not_run_parses; the PostgreSQL store is "
        "tested by the postgres-marked suites)"
    ),
    "make bench": "the benchmarks take minutes and measure, they do not show usage",
}
# Lines of the set-up block, handled one by one.
SERVER_LINE = "make run"
SKIPPED_LINES = {"make test": "it would run this test inside itself"}

README_PORT = "localhost:50051"
STARTUP_TIMEOUT = 60.0
STEP_TIMEOUT = 180.0
_LISTENING = re.compile(r"^listening on (?P<host>\S+):(?P<port>\d+)$", re.MULTILINE)
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)(?P<lang>[^\s`]*)[^`]*$")
_SAYS_IN_OUTPUT = re.compile(r"\s#\s+\"(?P<text>[^\"]+)\"\s*$")
_PRINT_SAYS = re.compile(r"^\s*print\(.*\)\s+#\s+(?P<text>.+?)\s*$")
_BUF = re.compile(r"npx (?:--yes )?(?P<package>@bufbuild/buf@[\w.]+)")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str

    @property
    def commands(self) -> list[str]:
        """The block's lines without comments or blank lines (continuations kept as lines)."""
        return [
            line.strip()
            for line in self.text.splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]


@dataclass(frozen=True)
class Step:
    block: Block
    text: str  # what is run: the block, or one line of the set-up block
    skip: str | None = None
    server: bool = False

    @property
    def id(self) -> str:
        return f"README.md:{self.block.line}-{self.block.language}-{self.text.split()[0]}"


def fenced_blocks(markdown: str) -> list[Block]:
    """Every fenced code block, in order, with its opening line and its indentation removed."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            line = lines[index]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            index += 1
        start = index - len(body)  # the opening fence's line, 1-based
        assert index < len(lines), f"README.md: the fence opened at line {start} is never closed"
        blocks.append(Block(start, opening["lang"].lower(), "\n".join(body) + "\n"))
        index += 1
    return blocks


def block_skip_reason(block: Block) -> str | None:
    first = block.commands[0] if block.commands else ""
    for prefix, reason in SKIPPED_BLOCKS.items():
        if first.startswith(prefix):
            return reason
    return None


def is_setup_block(block: Block) -> bool:
    handled = {SERVER_LINE, *SKIPPED_LINES}
    return block.language == "sh" and all(
        command.split("#")[0].strip() in handled for command in block.commands
    )


def steps_of(markdown: str) -> list[Step]:
    steps: list[Step] = []
    for block in fenced_blocks(markdown):
        if block.language not in RUN_LANGUAGES:
            continue
        if is_setup_block(block):
            for command in block.commands:
                line = command.split("#")[0].strip()
                if line == SERVER_LINE:
                    steps.append(Step(block, line, server=True))
                else:
                    steps.append(Step(block, line, skip=f"{line}: {SKIPPED_LINES[line]}"))
            continue
        reason = block_skip_reason(block)
        steps.append(Step(block, block.text, skip=reason))
    return steps


STEPS = steps_of(README.read_text(encoding="utf-8"))


# -- the convention ---------------------------------------------------------------------------
def test_every_block_is_run_or_skipped_with_a_reason() -> None:
    blocks = fenced_blocks(README.read_text(encoding="utf-8"))
    unknown = [
        f"line {b.line}: ```{b.language or '(no language)'}"
        for b in blocks
        if b.language not in RUN_LANGUAGES and b.language not in NOT_RUN_LANGUAGES
    ]
    assert unknown == [], (
        "README blocks in a language the README test neither runs nor lists with a reason "
        f"(add it to NOT_RUN_LANGUAGES in {Path(__file__).name}, or make it ```sh): {unknown}"
    )
    sh = [b for b in blocks if b.language == "sh"]
    assert sh, "no ```sh block found: is the fence parser broken?"
    accounted = {step.block.line for step in STEPS}
    assert [b.line for b in blocks if b.language in RUN_LANGUAGES] == sorted(accounted)
    stale = [
        prefix
        for prefix in SKIPPED_BLOCKS
        if not any(b.commands and b.commands[0].startswith(prefix) for b in sh)
    ]
    assert stale == [], f"SKIPPED_BLOCKS names blocks the README no longer has: {stale}"
    setup = [b for b in sh if is_setup_block(b)]
    assert len(setup) == 1 and setup[0] is sh[0], "the first ```sh block must be the set-up block"
    assert [c.split("#")[0].strip() for c in setup[0].commands] == ["make run", "make test"]
    for step in STEPS:
        assert step.skip is None or step.skip.strip(), step.id


def test_the_fence_parser_reads_indented_and_plain_blocks() -> None:
    markdown = 'text\n```sh\necho one\n```\n- item\n\n  ```hcl\n  path "x" {}\n  ```\n'
    assert fenced_blocks(markdown) == [
        Block(2, "sh", "echo one\n"),
        Block(7, "hcl", 'path "x" {}\n'),
    ]


def test_a_failing_command_fails_its_step(tmp_path: Path) -> None:
    """The runner can fail: a failing command anywhere in a block, or in a pipe, fails it."""
    for script in ("false\necho after\n", "false | cat\n", "echo x | grep -q y\n"):
        with pytest.raises(pytest.fail.Exception, match="exit"):
            run_shell(script, tmp_path, clean_env(), server_log=None)
    with pytest.raises(pytest.fail.Exception, match="not in the output"):
        run_shell('echo "+372 5123"    # "+372 **** **67"\n', tmp_path, clean_env(), None)
    with pytest.raises(pytest.fail.Exception, match="printed"):
        run_python('print("False")   # True\n', tmp_path, clean_env(), None)


# -- running the steps ------------------------------------------------------------------------
@dataclass
class ReadmeServer:
    workdir: Path
    port: int
    log_path: Path

    @property
    def env(self) -> dict[str, str]:
        return {**clean_env(), "PII_VAULT_TARGET": f"localhost:{self.port}"}

    def rewrite(self, text: str) -> str:
        return text.replace(README_PORT, f"localhost:{self.port}")

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def checkout_like(workdir: Path) -> None:
    """``workdir`` laid out like the repository root, with a ``var/`` of its own."""
    for entry in ROOT.iterdir():
        if entry.name in {"var", ".git"} or entry.name.endswith("_cache"):
            continue
        (workdir / entry.name).symlink_to(entry)


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeServer]:
    """``make run`` in a checkout-like directory, on a free port."""
    workdir = tmp_path_factory.mktemp("readme")
    checkout_like(workdir)
    log_path = workdir / "make-run.log"
    # Not what an outer make (``make test``) or the shell set: a user's plain ``make run``.
    inherited = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DATA_DIR", "VENV", "PYTHON"}
    env = {k: v for k, v in clean_env().items() if k not in inherited}
    env["PII_VAULT_LISTEN"] = "127.0.0.1:0"
    with log_path.open("wb") as log:
        make = subprocess.Popen(
            ["make", "-o", ".venv/.installed-stamp", "run"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make and the server it runs
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        port = 0
        while not port:
            output = log_path.read_text(encoding="utf-8", errors="replace")
            found = _LISTENING.search(output)
            if found:
                port = int(found["port"])
            elif make.poll() is not None:
                pytest.fail(f"make run exited with {make.returncode} before listening:\n{output}")
            elif time.monotonic() > deadline:
                pytest.fail(f"make run did not listen within {STARTUP_TIMEOUT}s:\n{output}")
            else:
                time.sleep(0.1)
        yield ReadmeServer(workdir, port, log_path)
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()


def _tail(log: str | None) -> str:
    if log is None:
        return ""
    return "\n--- server log (tail) ---\n" + "\n".join(log.splitlines()[-30:])


def run_shell(script: str, cwd: Path, env: dict[str, str], server_log: str | None) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"README command failed (exit {done.returncode}):\n{script}\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}{_tail(server_log)}"
        )
    for line in script.splitlines():
        says = _SAYS_IN_OUTPUT.search(line)
        if says and says["text"] not in done.stdout:
            pytest.fail(
                f"README says {says['text']!r} for {line.strip()!r}, but that is not in the "
                f"output:\n{done.stdout}"
            )
    return done.stdout


def run_python(snippet: str, cwd: Path, env: dict[str, str], server_log: str | None) -> str:
    venv_python = cwd / ".venv" / "bin" / "python"
    done = subprocess.run(
        [str(venv_python) if venv_python.exists() else sys.executable, "-c", snippet],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"README Python snippet failed (exit {done.returncode}):\n{snippet}\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}{_tail(server_log)}"
        )
    said = [m["text"] for line in snippet.splitlines() if (m := _PRINT_SAYS.match(line))]
    printed = done.stdout.splitlines()
    if said:
        wrong = [
            (out, text)
            for out, text in zip(printed, said, strict=False)
            if not (text == out or text.startswith(out + ":"))
        ]
        if len(printed) != len(said) or wrong:
            pytest.fail(f"README snippet says it prints {said}, it printed {printed}")
    return done.stdout


def tool_missing(script: str, cwd: Path, env: dict[str, str]) -> str | None:
    """Why a tool the step needs is not usable here, or None."""
    if "jq " in script and shutil.which("jq") is None:
        return "jq is not installed"
    for package in sorted({m["package"] for m in _BUF.finditer(script)}):
        if shutil.which("npx") is None:
            return f"npx (Node.js) is not installed, so {package} cannot run"
        probe = subprocess.run(
            ["npx", "--yes", package, "--version"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
            check=False,
        )
        if probe.returncode != 0:
            return f"npx cannot fetch {package} here: {probe.stderr.strip()[-300:]}"
    return None


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS, ids=[step.id for step in STEPS])
def test_readme_step(step: Step, request: pytest.FixtureRequest) -> None:
    if step.skip:
        pytest.skip(f"not run: {step.skip}")
    server: ReadmeServer = request.getfixturevalue("readme_server")
    if step.server:
        # The fixture ran it: make run initialised var/vault and serves mTLS.
        assert (server.workdir / "var" / "vault" / "tls" / "ca.crt").is_file()
        run_shell(".venv/bin/pii-vault health --as admin\n", server.workdir, server.env, server.log)
        return
    text = server.rewrite(step.text)
    missing = tool_missing(text, server.workdir, server.env)
    if missing:
        if os.environ.get("VAULT_REQUIRE_README_TOOLS") == "1":
            pytest.fail(f"VAULT_REQUIRE_README_TOOLS=1 but {missing}")
        pytest.skip(f"not run: {missing}")
    if step.block.language == "python":
        run_python(text, server.workdir, server.env, server.log)
    else:
        run_shell(text, server.workdir, server.env, server.log)


# -- where the README writes personal data ----------------------------------------------------
_OUTPUT_PATHS = re.compile(r"--(?:receipt-)?out\s+(?P<path>[^\s`]+)")


def test_every_file_the_readme_writes_is_ignored_by_git() -> None:
    """Exports (plaintext personal data) and receipts land where git ignores them."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = sorted({m["path"] for m in _OUTPUT_PATHS.finditer(README.read_text("utf-8"))})
    assert paths, "the README writes no export or receipt: is the pattern stale?"
    tracked = [
        path
        for path in paths
        if subprocess.run(
            ["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT, check=False
        ).returncode
        != 0
    ]
    assert tracked == [], f"README writes files git would pick up: {tracked}"


# -- commands that are not run still parse ----------------------------------------------------
_INLINE_COMMAND = re.compile(r"`(?P<command>pii-vault [^`]+)`")


def as_argv(command: str) -> list[str]:
    """A documented command line as argv for the parser: ``[optional parts]`` dropped, the
    first of ``a|b``, and ``...`` as a placeholder value."""
    command = " ".join(command.replace("\\\n", " ").split())
    command = re.sub(r"\[[^\]]*\]", " ", command).replace("...", "VALUE")
    command = re.sub(r"(\S+?)\|\S+", r"\1", command)
    return shlex.split(command)[1:]


def parse_error(argv: list[str]) -> str | None:
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exit_:
        if exit_.code not in (0, None):
            return stderr.getvalue().strip().splitlines()[-1]
    return None


def test_every_command_not_run_parses() -> None:
    """Inline `pii-vault ...` commands in the prose and the skipped blocks' ``pii-vault`` lines
    name commands and flags the CLI has (parsed, not run)."""
    readme = README.read_text(encoding="utf-8")
    commands = [m["command"] for m in _INLINE_COMMAND.finditer(readme)]
    for step in STEPS:
        if step.skip and step.block.language == "sh":
            joined = step.text.replace("\\\n", " ")
            commands += [line for line in joined.splitlines() if line.startswith("pii-vault ")]
    assert len(commands) > 10, "found few pii-vault commands in README.md: is the pattern stale?"
    wrong = [
        f"{' '.join(command.split())!r}: {error}"
        for command in commands
        if (error := parse_error(as_argv(command)))
    ]
    assert wrong == [], "README.md documents commands the CLI refuses:\n" + "\n".join(wrong)


def test_every_make_target_not_run_exists() -> None:
    """``make test``, ``make bench``: not run here, but targets the Makefile has (``make -n``)."""
    targets = [
        line.split("#")[0].split()[1]
        for step in STEPS
        if step.skip and step.block.language == "sh"
        for line in step.text.splitlines()
        if line.startswith("make ")
    ]
    assert "test" in targets
    for target in targets:
        dry = subprocess.run(
            ["make", "-n", "-o", ".venv/.installed-stamp", target],
            cwd=ROOT,
            env={k: v for k, v in clean_env().items() if not k.startswith("MAKE")},
            capture_output=True,
            text=True,
            check=False,
        )
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"


def test_the_parse_check_can_fail() -> None:
    assert parse_error(as_argv("pii-vault keys spin --as admin")) is not None
    assert parse_error(as_argv("pii-vault shred --as deletion acct-1 --colour red")) is not None
    template = "pii-vault hold --as admin|privacy-desk SUBJECT --reason ..."
    assert parse_error(as_argv(template)) is None


# -- paths the README names -------------------------------------------------------------------
_CODE_PATH = re.compile(r"`(?P<path>[\w.-]+(?:/[\w.*-]+)+/?)`|\]\((?P<link>[^)#:\s]+)\)")


def test_every_repository_path_the_readme_names_exists() -> None:
    """`clients/examples/checkout.py`, [links](docs/x.md): a path under one of the
    repository's own directories must exist (``var/...`` and ``/data`` are not the repo's)."""
    tops = {
        entry.name
        for entry in ROOT.iterdir()
        if entry.is_dir()
        and entry.name not in {"var", ".git", ".venv"}
        and not entry.name.endswith(("_cache", ".egg-info"))
    }
    named = set()
    for match in _CODE_PATH.finditer(README.read_text(encoding="utf-8")):
        path = match["path"] or match["link"]
        if path.split("/")[0] in tops or match["link"]:
            named.add(path)
    assert len(named) > 5, "the README names few repository paths: is the pattern stale?"
    missing = sorted(path for path in named if not any(ROOT.glob(path.rstrip("/"))))
    assert missing == [], f"README.md names paths the repository does not have: {missing}"
