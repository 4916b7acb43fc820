import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def selfplay_cli():
    """The installed ``selfplay`` console script of this environment."""
    script = Path(sys.executable).parent / "selfplay"
    if not script.exists():
        pytest.fail(f"console script {script} missing: install the project with scripts/install.sh")
    return str(script)
