"""Fixtures shared by the test modules."""

import pytest

from facerec.data import SyntheticFaces


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    """Synthetic faces as an identity-folder tree: 4 people x 3 images, 40x40 PNG."""
    root = tmp_path_factory.mktemp("faces")
    SyntheticFaces(4, 3, size=40).write_tree(root, progress=False)
    return root
