"""The data contract: every tuple once, sums mod p, a seeded split that is disjoint and complete."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinymod.model import data


@given(st.integers(1, 12), st.integers(1, 3))
def test_all_tuples_are_every_tuple_in_order(p, T):
    x = data.all_tuples(p, T)
    assert x.shape == (p**T, T)
    assert len({tuple(row) for row in x}) == p**T
    assert x.min() >= 0 and x.max() < p
    # row n is the base-p digits of n
    weights = p ** np.arange(T - 1, -1, -1)
    np.testing.assert_array_equal(x @ weights, np.arange(p**T))


def test_targets_are_sums_mod_p():
    x = data.all_tuples(7, 2)
    y = data.targets(x, 7)
    assert all(y[i] == (a + b) % 7 for i, (a, b) in enumerate(x))


@given(st.integers(2, 15), st.integers(1, 3), st.floats(0.05, 0.95), st.integers(0, 1000))
def test_split_is_disjoint_complete_sized_and_seeded(p, T, frac, seed):
    n = p**T
    train, test = data.split_indices(n, frac, seed)
    assert len(train) == round(frac * n) and len(train) + len(test) == n
    assert set(train).isdisjoint(test) and set(train) | set(test) == set(range(n))
    again, _ = data.split_indices(n, frac, seed)
    np.testing.assert_array_equal(train, again)
    ds = data.make_dataset(p, T, frac, seed)
    np.testing.assert_array_equal(ds.x_train, data.all_tuples(p, T)[train])
    np.testing.assert_array_equal(ds.y_train, ds.x_train.sum(axis=1) % p)
    np.testing.assert_array_equal(ds.y_test, ds.x_test.sum(axis=1) % p)


def test_split_is_the_contracts_permutation():
    """Contract 2: numpy.random.default_rng(seed).permutation, first round(frac * n) train."""
    train, test = data.split_indices(113 * 113, 0.3, 0)
    perm = np.random.default_rng(0).permutation(113 * 113)
    np.testing.assert_array_equal(np.concatenate([train, test]), perm)
    assert len(train) == 3831


def test_different_seeds_split_differently():
    a, _ = data.split_indices(169, 0.5, 0)
    b, _ = data.split_indices(169, 0.5, 1)
    assert set(a) != set(b)


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction_is_refused(frac):
    with pytest.raises(ValueError, match="frac"):
        data.make_dataset(5, 2, frac, 0)
