"""The process-kind configuration the lease test's executors serve.

``commands`` runs ``leasework.py`` as a local process (the real process kind:
its own process group, SIGTERM then SIGKILL after ``grace_s`` when its run is
cancelled). Importing this module installs the partition hook
(:mod:`partition`) in the executor process that loads it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import partition

from colonymesh.executors.process import ProcessConfig

partition.install()

commands = ProcessConfig(
    commands={"work": (sys.executable, str(Path(__file__).with_name("leasework.py")))},
    inherit_env=("PATH", "HOME", "ROLES_RECORD_DIR", "ROLES_EXECUTOR_ID"),
    grace_s=0.2,
    log_interval_s=0.2,
)
