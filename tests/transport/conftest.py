import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "interop: runs js-libp2p / py-libp2p peers as subprocesses (needs node, npm)"
    )
