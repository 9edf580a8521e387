"""``python -m xpress_fast``: the same as the ``xpress-fast`` command."""
import sys

from .cli import main

sys.exit(main())
