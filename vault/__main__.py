"""``python -m vault``: the same as the ``pii-vault`` command."""

import sys

from vault.cli import main

sys.exit(main())
