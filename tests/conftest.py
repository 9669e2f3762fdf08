"""Shared test settings."""

import pytest


@pytest.fixture(autouse=True)
def _judge_cache_in_tmp(tmp_path_factory, monkeypatch):
    # The judge cache defaults to ~/.cache/hub_llava: tests never read or fill the user's (a cached reply would make a
    # test that counts judge calls pass or fail by what ran before it).
    monkeypatch.setenv("HUB_LLAVA_CACHE", str(tmp_path_factory.mktemp("hub_llava_cache")))
