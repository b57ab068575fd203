from __future__ import annotations

import pytest

from support.colony import ColonyFixture, make_colony


@pytest.fixture
def lab() -> ColonyFixture:
    return make_colony()
