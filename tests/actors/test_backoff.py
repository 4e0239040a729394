"""exponential_delay: the package's one "exponential, capped" formula."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkit_trio.actors import RestartBackoff
from cloudkit_trio.actors._backoff import exponential_delay


def delay(n: int, initial: float = 0.1, multiplier: float = 2.0, maximum: float = 30.0) -> float:
    return exponential_delay(n, initial=initial, multiplier=multiplier, maximum=maximum)


class TestExponentialDelay:
    def test_the_seed_table(self) -> None:
        """100 ms, doubling, capped at 30 s: 100, 200, 400, 800 ms, exactly (DESIGN.md §5)."""
        assert [delay(n) for n in range(4)] == [0.1, 0.2, 0.4, 0.8]

    def test_the_cap(self) -> None:
        """Past the cap the delay is the cap; reaching it exactly is the cap too."""
        assert delay(8) == 25.6
        assert delay(9) == 30.0
        assert delay(2, initial=1.0, maximum=4.0) == 4.0
        assert delay(1, initial=1.0, maximum=4.0) == 2.0

    @pytest.mark.parametrize("n", [64, 1075, 10**6, 2**64, 10**400])
    def test_huge_n_neither_overflows_nor_takes_time(self, n: int) -> None:
        """Any n gives the cap, also past the float range of multiplier ** n."""
        assert delay(n) == 30.0
        if n >= 10**6:  # enough steps to span the whole float range, or a tiny multiplier
            assert delay(n, initial=1e-320, maximum=1e300) == 1e300
            assert delay(n * 100, multiplier=1.0000001) == 30.0

    def test_a_power_beyond_the_float_range_below_the_cap(self) -> None:
        """A tiny initial times a power too large for a float is still computed."""
        got = delay(1100, initial=1e-320, maximum=1e300)
        assert math.isclose(got, 1e-320 * 2.0**550 * 2.0**550, rel_tol=1e-9)

    @pytest.mark.parametrize("n", [0, 1, 10, 10**400])
    def test_multiplier_one_is_constant(self, n: int) -> None:
        """With multiplier 1 every delay is initial."""
        assert delay(n, initial=0.5, multiplier=1.0) == 0.5

    def test_degenerate_bounds(self) -> None:
        """initial 0 stays 0; initial at or above the cap is the cap."""
        assert delay(10**400, initial=0.0) == 0.0
        assert delay(0, initial=0.0, maximum=0.0) == 0.0
        assert delay(0, initial=5.0, maximum=1.0) == 1.0
        assert delay(3, initial=1.0, maximum=1.0) == 1.0

    def test_an_infinite_cap_is_no_cap(self) -> None:
        """maximum=inf grows without limit and saturates at inf instead of overflowing."""
        assert delay(10, initial=1.0, maximum=math.inf) == 1024.0
        assert delay(10**400, initial=1.0, maximum=math.inf) == math.inf

    @pytest.mark.parametrize(
        ("n", "initial", "multiplier", "maximum"),
        [
            (-1, 0.1, 2.0, 30.0),
            (0, -0.1, 2.0, 30.0),
            (0, 0.1, 2.0, -1.0),
            (0, math.nan, 2.0, 30.0),
            (0, 0.1, 0.5, 30.0),
            (0, 0.1, math.inf, 30.0),
            (0, 0.1, math.nan, 30.0),
        ],
    )
    def test_rejects_nonsense(
        self, n: int, initial: float, multiplier: float, maximum: float
    ) -> None:
        """Negative steps or bounds, NaN, and multipliers below 1 or infinite are errors."""
        with pytest.raises(ValueError, match=r"n|multiplier|initial"):
            exponential_delay(n, initial=initial, multiplier=multiplier, maximum=maximum)

    @given(
        n=st.integers(min_value=0, max_value=5000),
        initial=st.floats(min_value=0.0, max_value=100.0),
        multiplier=st.floats(min_value=1.0, max_value=10.0),
        maximum=st.floats(min_value=0.0, max_value=1e6),
    )
    def test_agrees_with_the_formula_and_never_shrinks(
        self, n: int, initial: float, multiplier: float, maximum: float
    ) -> None:
        """min(maximum, initial * multiplier ** n), within rounding; non-decreasing in n."""
        got = delay(n, initial, multiplier, maximum)
        assert min(initial, maximum) <= got <= maximum
        assert got <= delay(n + 1, initial, multiplier, maximum)
        try:
            expected = min(maximum, initial * multiplier**n)
        except OverflowError:
            expected = maximum if initial else 0.0
        assert math.isclose(got, expected, rel_tol=1e-9)


class TestRestartBackoffUsesIt:
    def test_base_delay_is_exponential_delay(self) -> None:
        """RestartBackoff's delay before jitter is exponential_delay of its settings."""
        backoff = RestartBackoff(initial=0.5, multiplier=3.0, max_delay=10.0, jitter=0.0)
        for n in (0, 1, 2, 3, 10**400):
            expected = exponential_delay(n, initial=0.5, multiplier=3.0, maximum=10.0)
            assert backoff.base_delay(n) == expected == backoff.delay(n)

    def test_negative_count_is_refused(self) -> None:
        """Restarts count from 0."""
        with pytest.raises(ValueError, match="from 0"):
            RestartBackoff().delay(-1)
