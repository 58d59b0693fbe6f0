"""core/series.py: timestamps read as numbers or ISO dates, series grouped in order of first appearance."""
import numpy as np

from lstm_onnx.core.series import format_time, groups, is_date_column, parse_times, windows


def test_times_are_numbers_or_iso_dates_and_format_back():
    np.testing.assert_array_equal(parse_times(["1", "2.5"]), [1.0, 2.5])
    t = parse_times(["2024-01-01T00:00:00", "2024-01-01 01:00", "2024-01-02"])
    np.testing.assert_array_equal(np.diff(t), [3600.0, 23 * 3600.0])
    assert parse_times(["2024-01-01", "soon"]) is None
    assert format_time(t[1], iso=True) == "2024-01-01T01:00:00"
    assert format_time(t[2], iso=True) == "2024-01-02"
    assert format_time(19580329.0, iso=False) == "19580329"


def test_only_iso_dates_make_a_date_column():
    assert is_date_column(["2024-01-01", "", "2024-01-03"])
    assert not is_date_column(["19580329", "19580405"])  # numbers stay numbers (they may be features)
    assert not is_date_column(["north", "south"])
    assert not is_date_column(["", " "])


def test_groups_keep_file_order_within_a_series_and_first_appearance_between():
    got = groups(["b", "a", "b", "c", "a"], 5)
    assert [g for g, _ in got] == ["b", "a", "c"]
    assert [list(rows) for _, rows in got] == [[0, 2], [1, 4], [3]]
    assert [(g, list(r)) for g, r in groups(None, 3)] == [("", [0, 1, 2])]


def test_windows_read_the_target_horizon_steps_after_the_window():
    series = np.arange(10.0)[:, None] * [1.0, 10.0]
    x, y = windows(series, [1], window=3, horizon=2, stride=2)
    np.testing.assert_array_equal(x[:, :, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    np.testing.assert_array_equal(y[:, 0], [40, 60, 80])
