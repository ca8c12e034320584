"""`python -m r1.daemon`: the daemon with settings from the environment (how the CLI autostarts it)."""

import sys

from .config import ConfigError, Settings
from .server import run

try:
    settings = Settings.from_env()
except ConfigError as exc:
    sys.exit(f"r1: {exc}")
sys.exit(run(settings))
