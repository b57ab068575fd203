"""Map the design card's top-level folders onto the one namespace ``colonymesh``.

The repository root is the ``colonymesh`` package; its subpackages are found
here rather than listed by hand, so a new module folder cannot be forgotten in
the wheel. ``tests``, ``bench`` and ``docs`` are never installed.
"""

from setuptools import find_packages, setup

PARTS = ["node", "consensus", "executors", "fs", "simulations"]
subpackages = find_packages(where=".", include=[f"{p}" for p in PARTS] + [f"{p}.*" for p in PARTS])

setup(
    package_dir={"colonymesh": "."},
    packages=["colonymesh"] + [f"colonymesh.{name}" for name in subpackages],
    package_data={"colonymesh": ["py.typed"]},
    include_package_data=False,
)
