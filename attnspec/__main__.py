"""`python -m attnspec` is the `attnspec` command."""

import sys

from .cli import main

sys.exit(main())
