"""Map the design card's top-level folders onto the one namespace ``colonymesh``.

The repository root is the ``colonymesh`` package; its subpackages are found
here rather than listed by hand, so a new module folder cannot be forgotten in
the wheel. ``tests``, ``bench``, ``docs`` and this file are never installed.
"""

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PARTS = ["node", "consensus", "executors", "fs", "simulations"]
ROOT_ONLY = {"setup"}  # build scripts at the root that are not part of the package


class BuildPy(build_py):  # type: ignore[misc]
    def find_package_modules(self, package: str, package_dir: str) -> list[tuple[str, str, str]]:
        modules: list[tuple[str, str, str]] = super().find_package_modules(package, package_dir)
        if package == "colonymesh":
            modules = [entry for entry in modules if entry[1] not in ROOT_ONLY]
        return modules


subpackages = find_packages(where=".", include=PARTS + [f"{part}.*" for part in PARTS])

setup(
    cmdclass={"build_py": BuildPy},
    package_dir={"colonymesh": "."},
    packages=["colonymesh"] + [f"colonymesh.{name}" for name in subpackages],
    package_data={"colonymesh": ["py.typed"]},
    include_package_data=False,
)
