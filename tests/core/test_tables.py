from lstm_onnx.core.tables import grid


def test_text_columns_are_padded_to_the_widest_cell():
    assert grid(["a", "bb"], [["xyz", "1"], ["q", "22"]]) == ["a    bb", "---  --", "xyz  1", "q    22"]


def test_markdown_has_a_header_rule_per_column():
    assert grid(["a", "b"], [["1", "2"]], markdown=True) == ["| a | b |", "|---|---|", "| 1 | 2 |"]
