"""A throwaway SoftHSM2 for the whole pytest process, and fixtures that use it.

A PKCS#11 module reads ``SOFTHSM2_CONF`` once, at C_Initialize, and
python-pkcs11 keeps one loaded library per module path for the life of the
process, so there is exactly one token directory per pytest process: the
session-scoped ``softhsm`` fixture makes it (under pytest's tmp directory),
points ``SOFTHSM2_CONF`` at it and initialises the token ``MAIN_TOKEN``
before anything loads the module. Tests keep apart by object label
(``pkcs11_uri`` gives each test its own), or by token when a test needs a
token nobody in the process has logged in to yet (``fresh_token``: a token
made after the module loaded, which the provider finds by re-initialising the
module). Subprocesses inherit the environment and so open the same tokens.

Without SoftHSM2 the tests skip, saying why, unless
``VAULT_REQUIRE_KEY_PROVIDERS=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

MODULE = os.environ.get("VAULT_SOFTHSM_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
MAIN_TOKEN = "vault"
USER_PIN = "4711-user-pin"
SO_PIN = "0815-so-pin"


@dataclass(frozen=True)
class SoftHsm:
    module: str
    directory: Path
    pin_file: Path

    def uri(self, object_label: str, token: str = MAIN_TOKEN, pin_file: Path | None = None) -> str:
        pin = pin_file or self.pin_file
        return (
            f"pkcs11:token={token};object={object_label}"
            f"?module-path={self.module}&pin-source=file:{pin}"
        )

    def init_token(self, label: str) -> None:
        """Initialise one more token (a loaded module sees it only once it re-initialises)."""
        args = ["--init-token", "--free", "--label", label, "--pin", USER_PIN, "--so-pin", SO_PIN]
        subprocess.run(["softhsm2-util", *args], check=True, capture_output=True, timeout=60)


_started: SoftHsm | None = None


def missing_softhsm() -> str:
    """Why SoftHSM2 cannot be used here, or '' when it can."""
    if not Path(MODULE).exists():
        return f"SoftHSM2 module {MODULE} is not installed (apt-get install softhsm2)"
    if shutil.which("softhsm2-util") is None:
        return "softhsm2-util is not on PATH (apt-get install softhsm2)"
    return ""


def require_softhsm() -> None:
    """Skip (or, with VAULT_REQUIRE_KEY_PROVIDERS=1, fail) when SoftHSM2 is missing."""
    reason = missing_softhsm()
    if reason:
        if os.environ.get("VAULT_REQUIRE_KEY_PROVIDERS") == "1":
            pytest.fail(f"VAULT_REQUIRE_KEY_PROVIDERS=1 but {reason}")
        pytest.skip(reason)


def start_softhsm(directory: Path) -> SoftHsm:
    """Make the process's token directory and tokens; later calls return the first one."""
    global _started
    if _started is not None:
        return _started
    require_softhsm()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin_file = directory / "user.pin"
    pin_file.write_text(USER_PIN + "\n")
    pin_file.chmod(0o600)
    started = SoftHsm(MODULE, directory, pin_file)
    started.init_token(MAIN_TOKEN)
    _started = started
    return started


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    return start_softhsm(tmp_path_factory.mktemp("softhsm"))


_labels = itertools.count(1)


@pytest.fixture
def object_label() -> str:
    """An object label no other test in this process uses."""
    return f"kek{next(_labels)}"


@pytest.fixture
def pkcs11_uri(softhsm: SoftHsm, object_label: str) -> Iterator[str]:
    """A URI for a master key of this test's own, not yet created, on the main token."""
    yield softhsm.uri(object_label)


@pytest.fixture
def fresh_token(softhsm: SoftHsm) -> str:
    """The label of a token made for this test alone, after the module loaded."""
    label = f"fresh{next(_labels)}"
    softhsm.init_token(label)
    return label
