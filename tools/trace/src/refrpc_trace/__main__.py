"""``python -m refrpc_trace``: the ``refrpc-trace`` command."""

import sys

from ._cli import main

sys.exit(main())
