"""find_permutation's cache: keyed by content, never stale, bounded, and invisible in the results."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import tensors
from tasder.tasd import permutation as perm_module
from tasder.tasd.permutation import clear_permutation_cache, find_permutation, permutation_cache_info


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_permutation_cache()


def _weight(seed: int, shape: tuple[int, int] = (16, 64)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    return w * (torch.rand(shape, generator=g) < 0.3)


def test_same_content_is_a_hit_even_in_another_tensor() -> None:
    w = _weight(0)
    first = find_permutation(w, "1:8")
    again = find_permutation(w.clone(), "1:8")
    assert torch.equal(first, again)
    assert permutation_cache_info()["hits"] == 1 and permutation_cache_info()["misses"] == 1


def test_series_with_the_same_kept_count_and_block_share_an_entry() -> None:
    w = _weight(1)
    assert torch.equal(find_permutation(w, "4:8+1:8"), find_permutation(w, "5:8"))
    assert permutation_cache_info() == {**permutation_cache_info(), "hits": 1, "misses": 1, "entries": 1}


def test_a_changed_weight_never_gets_the_old_permutation() -> None:
    w = _weight(2)
    find_permutation(w, "1:8")
    w2 = w.clone()
    w2[0, 0] += 1.0  # one element: a different digest
    got = find_permutation(w2, "1:8")
    assert torch.equal(got, find_permutation(w2, "1:8", cache=False))
    assert permutation_cache_info()["misses"] == 2


def test_in_place_change_of_the_same_tensor_is_seen() -> None:
    w = _weight(3)
    before = find_permutation(w, "2:8")
    w.mul_(torch.linspace(0.1, 10.0, w.shape[1]))  # same object, new values
    after = find_permutation(w, "2:8")
    assert torch.equal(after, find_permutation(w, "2:8", cache=False))
    assert permutation_cache_info()["misses"] == 2
    del before


def test_modifying_a_returned_permutation_does_not_reach_the_cache() -> None:
    w = _weight(4)
    p = find_permutation(w, "1:8")
    expected = p.clone()
    p.zero_()
    assert torch.equal(find_permutation(w, "1:8"), expected)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(perm_module, "CACHE_MAX_ENTRIES", 3)
    for seed in range(6):
        find_permutation(_weight(seed), "1:8")
    info = permutation_cache_info()
    assert info["entries"] == 3 and info["bytes"] == 3 * 64 * 8
    monkeypatch.setattr(perm_module, "CACHE_MAX_BYTES", 64 * 8)  # room for one permutation of K = 64
    find_permutation(_weight(10), "1:8")
    assert permutation_cache_info()["entries"] == 1


def test_settings_are_part_of_the_key() -> None:
    w = _weight(5)
    find_permutation(w, "1:8", seed=0)
    find_permutation(w, "1:8", seed=1)
    find_permutation(w, "1:8", max_rows=4)
    assert permutation_cache_info()["misses"] == 3


@settings(max_examples=40)
@given(st.data())
def test_cached_and_uncached_results_are_equal(data: st.DataObject) -> None:
    x = data.draw(tensors((data.draw(st.integers(1, 6)), data.draw(st.integers(2, 40))),
                          kinds=("ties", "normal")), label="x")
    s = data.draw(st.sampled_from(["1:4", "2:8+1:8", "1:2", "3:8"]), label="series")
    fresh = find_permutation(x, s, cache=False)
    assert torch.equal(find_permutation(x, s), fresh)
    assert torch.equal(find_permutation(x, s), fresh)  # the hit


def test_a_store_keeps_permutations_for_the_next_process(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasder.tasd.permutation import permutation_store

    w = _weight(7)
    with permutation_store(tmp_path):
        first = find_permutation(w, "1:8")
    files = list(tmp_path.glob("*/*.perm"))
    assert len(files) == 1
    clear_permutation_cache()  # a new process: memory is empty
    monkeypatch.setattr(perm_module, "_search", lambda *a: pytest.fail("searched although the store has it"))
    with permutation_store(tmp_path):
        again = find_permutation(w, "1:8")
    assert torch.equal(again, first) and permutation_cache_info()["disk_hits"] == 1
    monkeypatch.undo()
    # a damaged entry is ignored and rewritten; outside a store nothing is read or written
    files[0].write_bytes(b"\x00" * 8)
    clear_permutation_cache()
    with permutation_store(tmp_path):
        assert torch.equal(find_permutation(w, "1:8"), first)
    assert files[0].stat().st_size == 4 * w.shape[1]
    clear_permutation_cache()
    find_permutation(_weight(8), "1:8")
    assert len(list(tmp_path.glob("*/*.perm"))) == 1


def test_a_full_store_loses_its_oldest_half(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasder.tasd.permutation import permutation_store

    monkeypatch.setattr(perm_module, "STORE_MAX_FILES", 4)
    with permutation_store(tmp_path):
        for seed in range(6):
            find_permutation(_weight(seed), "1:8")
    assert len(list(tmp_path.glob("*/*.perm"))) == 6
    with permutation_store(tmp_path):
        pass
    assert len(list(tmp_path.glob("*/*.perm"))) == 2
