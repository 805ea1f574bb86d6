"""``python -m cli``: the same as the ``parm`` command."""

import sys

from cli.main import main

sys.exit(main())
