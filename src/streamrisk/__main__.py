"""`python -m streamrisk` is the `streamrisk` command."""

import sys

from .cli import main

sys.exit(main())
