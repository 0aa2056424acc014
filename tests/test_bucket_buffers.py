"""The reused buffers of :class:`~autobalance.optim.buckets.Bucket`: one gradient matrix per row
count, one update vector, cached reached masks; a reused buffer must never leak a previous step."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from autobalance.optim.buckets import Bucket

SHAPES = [(2, 3), (3,), (1,), (2, 2)]


def _bucket() -> Bucket:
    params = [torch.zeros(shape, dtype=torch.float64, requires_grad=True) for shape in SHAPES]
    return Bucket(group_index=0, params=params, indices=list(range(len(params))))


@settings(max_examples=30, deadline=None)
@given(
    patterns=st.lists(
        st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=2, max_size=2),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 2**16),
)
def test_flatten_rows_is_the_concatenation_at_every_call(
    patterns: list[list[list[bool]]], seed: int
) -> None:
    """Call after call (the buffer is reused), row ``k`` is gradient ``k`` flattened end to end,
    zeros where it is ``None``; the reached mask and parameters follow the pattern."""
    bucket = _bucket()
    gen = torch.Generator().manual_seed(seed)
    for pattern in patterns:
        rows = [
            [
                torch.randn(s, generator=gen, dtype=torch.float64) if hit else None
                for s, hit in zip(SHAPES, hits, strict=True)
            ]
            for hits in pattern
        ]
        expected = torch.stack(
            [
                torch.cat(
                    [
                        g.reshape(-1) if g is not None else torch.zeros(p.numel(), dtype=p.dtype)
                        for g, p in zip(row, bucket.params, strict=True)
                    ]
                )
                for row in rows
            ]
        )
        assert torch.equal(bucket.flatten_rows(rows), expected)
        mask = bucket.reached_rows(rows)
        assert mask.tolist() == pattern
        hit = [any(column) for column in zip(*pattern, strict=True)]
        assert bucket.reached_params(mask) == [
            p for p, h in zip(bucket.params, hit, strict=True) if h
        ]
        fresh = torch.tensor(pattern)  # not a cached mask: read, not looked up
        assert bucket.reached_params(fresh) == bucket.reached_params(mask)
    for zero in bucket._zeros_like_params():  # the stand-ins for None were never written to
        assert not zero.any()


def test_flatten_rows_reuses_its_buffer_for_the_same_row_count() -> None:
    bucket = _bucket()
    ones = [[torch.ones(s, dtype=torch.float64) for s in SHAPES] for _ in range(2)]
    first = bucket.flatten_rows(ones)
    assert bucket.flatten_rows(ones) is first  # documented: valid until the next call
    assert bucket.flatten_rows(ones[:1]).shape == (1, bucket.numel)


def test_subtract_is_foreach_sub_of_the_split_vector_bit_for_bit() -> None:
    bucket = _bucket()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in bucket.params:
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    expected = [p.detach().clone() for p in bucket.params]
    for _ in range(3):
        delta = torch.randn(bucket.numel, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            bucket.subtract(delta)
        torch._foreach_sub_(
            expected,
            [d.view(p.shape) for d, p in zip(delta.split(bucket.sizes), expected, strict=True)],
        )
        assert all(torch.equal(p, e) for p, e in zip(bucket.params, expected, strict=True))
