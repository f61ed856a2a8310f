"""`python -m harness.cli ARGS`: the `mallocbench` command without its console script."""

import sys

from harness.cli.main import main

sys.exit(main())
