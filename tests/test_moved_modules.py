"""Modules moved when learner/ was split by role (and reward models moved to reward_workers/models/) keep their old
import path: the same module object, so old code, mock patches and pickles (RLlib checkpoints name classes by
module path) still work."""

from __future__ import annotations

import importlib
import pickle
import sys

import pytest

from vlmrl.learner import MOVED_MODULES


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_old_path_is_the_moved_module(old):
    with pytest.warns(DeprecationWarning, match="moved to"):
        sys.modules.pop(old, None)
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED_MODULES[old])
    assert module.__spec__.name == MOVED_MODULES[old]  # the alias does not rename the real module


def test_a_pickle_naming_an_old_path_loads():
    from vlmrl.reward_workers.models.compact_lrm import CompactLRMConfig

    # protocol 0 writes module paths as plain text lines, so the old path can be spliced in
    blob = pickle.dumps(CompactLRMConfig(), protocol=0)
    blob = blob.replace(b"vlmrl.reward_workers.models.compact_lrm", b"vlmrl.learner.compact_lrm")
    assert b"vlmrl.learner.compact_lrm" in blob
    assert pickle.loads(blob) == CompactLRMConfig()


def test_no_unknown_module_is_invented():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("vlmrl.learner.no_such_module")
