from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for peerkit

from support.colony import ColonyFixture, make_colony


@pytest.fixture
def lab() -> ColonyFixture:
    return make_colony()
