import importlib.util
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def device_module():
    """scripts/device.py loaded as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("device_script", ROOT / "scripts" / "device.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
