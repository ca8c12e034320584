"""`python -m r1.daemon.runner --fd N`: started by the daemon, never by hand."""

import sys

from .worker import main

sys.exit(main(sys.argv[1:]))
