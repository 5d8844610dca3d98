"""One exception root, and a Python class for every custom error the compiled contracts can raise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ledger import errors
from ledger.chain import CONTRACT_NAMES, RevertDecoder, load_artifact
from tests.support import ROOT

BUILD_DIR = ROOT / "build" / "contracts"


def _build_errors() -> dict[str, str]:
    """name -> signature of every custom error in the ABIs of the contracts `ledger deploy` deploys."""
    found: dict[str, str] = {}
    for name in CONTRACT_NAMES:
        abi, _ = load_artifact(BUILD_DIR, name)
        for item in abi:
            if item["type"] == "error":
                found[item["name"]] = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
    return found


def test_every_compiled_custom_error_has_a_python_class(anvil_url):  # anvil_url: the build exists
    missing = {name: sig for name, sig in _build_errors().items() if name not in errors.revert_classes()}
    assert not missing, f"add these classes to ledger/errors.py: {missing}"


def test_python_error_signatures_match_the_build(anvil_url):
    build = _build_errors()
    wrong = {
        name: (cls.signature, build[name])
        for name, cls in errors.revert_classes().items()
        if name in build and cls.signature != build[name]
    }
    assert not wrong


def test_error_classes_name_only_errors_of_the_build(anvil_url):
    builtin = {"Error", "Panic"}
    stale = set(errors.revert_classes()) - set(_build_errors()) - builtin
    assert not stale, f"ledger/errors.py names errors no contract has: {stale}"


def test_decoder_maps_build_errors_to_the_named_classes(anvil_url):
    abis = [load_artifact(BUILD_DIR, name)[0] for name in CONTRACT_NAMES]
    decoder = RevertDecoder(abis)
    from eth_utils import keccak

    data = keccak(text="SplitIsLocked(uint256)")[:4] + (5).to_bytes(32, "big")
    exc = decoder.decode(data)
    assert type(exc) is errors.SplitIsLocked and exc.args_dict == {"workId": 5}


@pytest.mark.parametrize(
    "name",
    sorted(
        n for n in dir(errors) if isinstance(getattr(errors, n), type) and issubclass(getattr(errors, n), Exception)
    ),
)
def test_every_ledger_exception_has_the_one_root(name):
    assert issubclass(getattr(errors, name), errors.LedgerError)


def test_ingest_errors_share_the_root():
    from ledger import ingest

    classes = [
        c
        for c in vars(ingest).values()
        if isinstance(c, type) and issubclass(c, Exception) and c.__module__ == "ledger.ingest"
    ]
    assert classes and all(issubclass(c, errors.LedgerError) for c in classes)


def test_services_do_not_import_the_cli():
    code = (
        "import sys, ledger.relayer, ledger.mqtt, ledger.ingest, ledger.indexer, ledger.runtime; "
        "print(sorted(m for m in sys.modules if m == 'ledger.cli'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_version_does_not_import_web3():
    code = (
        "import sys; sys.argv = ['ledger', '--version']\n"
        "from ledger.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('web3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")
