"""Fixtures for the `timeglass bench` tests: the integration tests' own
(real uvicorn + FastAPI apps under `timeglass run`, nothing mocked)."""

import importlib.util
import sys
from pathlib import Path

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
sys.path.insert(0, str(_INTEGRATION))

_spec = importlib.util.spec_from_file_location("tg_integration_fixtures", _INTEGRATION / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

timeglass_bin = _fixtures.timeglass_bin
port = _fixtures.port
store = _fixtures.store
app_env = _fixtures.app_env
traced = _fixtures.traced
