"""Where ``conftest.py`` keeps every item a session collected, for ``test_markers``.

A plain module, since test modules cannot import a ``conftest`` by name.
"""

from __future__ import annotations

import pytest

#: Every item this session collected, before ``-k`` or ``-m`` deselected any.
COLLECTED_ITEMS = pytest.StashKey[list[pytest.Item]]()
