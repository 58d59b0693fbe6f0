"""`lstm-pipeline predict` with CSV: a header naming the model's features is accepted, in any order and with
other columns (a header lacking one is refused in one line), the output has a header of its target names, a
sequence head's rows say which sequence and step they are, and the numbers are exactly Predictor.predict's."""
import csv
import io

import numpy as np
import pytest
from click.testing import CliRunner

from lstm_onnx.cli.main import cli
from lstm_onnx.runtimes.embed import Predictor
from tests import models
from tests.harness import record

FEATURES = ",".join(f"f{k}" for k in range(models.F))  # tests/helpers.make_checkpoint's names


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict_csv")
    return {head: models.export(models.checkpoint(head), d / f"{head}.onnx") for head in ("last", "sequence")}


def run(*args):
    return CliRunner().invoke(cli, ["predict", *map(str, args)])


def write_csv(path, x, header: str | None = FEATURES):
    lines = ([header] if header is not None else []) + [",".join(repr(float(v)) for v in row) for row in x]
    path.write_text("\n".join(lines) + "\n")
    return path


def read_back(text: str) -> tuple[list[str], list[dict]]:
    reader = csv.DictReader(io.StringIO(text))
    return reader.fieldnames, list(reader)


def expected(model, x):
    return Predictor.load(str(model), warn=False).predict(x)


def test_header_accepted_and_written_and_values_equal_predictor(exported, tmp_path):
    x = models.raw_inputs(np.random.default_rng(0), [7])[0]
    with_header = run(exported["last"], write_csv(tmp_path / "h.csv", x))
    without = run(exported["last"], write_csv(tmp_path / "n.csv", x, header=None))
    assert with_header.exit_code == 0 and without.exit_code == 0, with_header.output + without.output
    assert with_header.stdout == without.stdout
    names, rows = read_back(with_header.stdout)
    assert names == ["sequence", "t0", "t1"]
    assert [r["sequence"] for r in rows] == ["0"]
    got = np.array([[r["t0"], r["t1"]] for r in rows], np.float32)
    np.testing.assert_array_equal(got, expected(exported["last"], x[None]))  # float32 written in full


def test_features_are_picked_by_name_from_any_layout(exported, tmp_path):
    """Columns reordered, an extra column, --drop and --columns: the same numbers as the plain file; a wrong
    pick (the columns in file order) would give others."""
    x = models.raw_inputs(np.random.default_rng(3), [6])[0]
    want = run(exported["last"], write_csv(tmp_path / "plain.csv", x)).stdout
    order = [2, 0, 1]
    shuffled = np.column_stack([x[:, order], np.arange(len(x))])
    header = ",".join([f"f{k}" for k in order] + ["when"])
    assert run(exported["last"], write_csv(tmp_path / "s.csv", shuffled, header)).stdout == want
    assert run(exported["last"], write_csv(tmp_path / "d.csv", shuffled, header), "--drop", "when").stdout == want
    bare = write_csv(tmp_path / "b.csv", shuffled, header=None)
    assert run(exported["last"], bare, "--columns", header).stdout == want
    assert run(exported["last"], write_csv(tmp_path / "x.csv", x[:, order])).stdout != want


def test_batch_of_last_head_has_one_row_per_sequence(exported, tmp_path):
    x = np.stack(models.raw_inputs(np.random.default_rng(1), [5, 5, 5]))
    np.save(tmp_path / "x.npy", x)
    r = run(exported["last"], tmp_path / "x.npy", "-o", tmp_path / "y.csv")
    assert r.exit_code == 0, r.output
    names, rows = read_back((tmp_path / "y.csv").read_text())
    assert names == ["sequence", "t0", "t1"] and [int(r["sequence"]) for r in rows] == [0, 1, 2]
    got = np.array([[r["t0"], r["t1"]] for r in rows], np.float32)
    np.testing.assert_array_equal(got, expected(exported["last"], x))


def test_sequence_head_keeps_the_sequences_apart(exported, tmp_path):
    x = np.stack(models.raw_inputs(np.random.default_rng(2), [4, 4]))
    np.save(tmp_path / "x.npy", x)
    r = run(exported["sequence"], tmp_path / "x.npy")
    assert r.exit_code == 0, r.output
    names, rows = read_back(r.stdout)
    assert names == ["sequence", "step", "t0", "t1"]
    want = expected(exported["sequence"], x)  # [2, 4, 2]
    for b in range(2):
        mine = [row for row in rows if row["sequence"] == str(b)]
        assert [int(row["step"]) for row in mine] == [0, 1, 2, 3]
        got = np.array([[row["t0"], row["t1"]] for row in mine], np.float32)
        np.testing.assert_array_equal(got, want[b])
    # -o x.csv writes what stdout shows.
    assert run(exported["sequence"], tmp_path / "x.npy", "-o", tmp_path / "y.csv").exit_code == 0
    assert (tmp_path / "y.csv").read_text() == r.stdout


def _without_feature_names(model, out):
    import onnx

    m = onnx.load(str(model))
    kept = [p for p in m.metadata_props if p.key != "lstm_onnx.feature_names"]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    onnx.save(m, str(out))
    return out


ROW = "1.5,2.5,3.5"
BAD_CSV = {  # name: (file content, words the one-line error must hold)
    "names differ": (f"a,b,c\n{ROW}\n", "expected f0,f1,f2, got a,b,c"),
    "a name missing": ("f0,f1\n1.5,2.5\n", "expected f0,f1,f2, got f0,f1"),
    "a name missing, a row longer": (f"f0,f1\n{ROW}\n", "line 2: 3 fields, expected 2 (f0, f1)"),
    "--drop of every feature": (f"f0,f1,f2\n{ROW}\n", "expected f0,f1,f2, got f1,f2"),
    "header only": (f"{FEATURES}\n", "no rows of numbers"),
    "empty file": ("", "no rows of numbers"),
    "blank lines only": ("\n\n \n", "no rows of numbers"),
    "a word among numbers": (f"{FEATURES}\n{ROW}\n1,x,3\n", "line 3, column 'f1': 'x' is not a number"),
    "a word, no header": (f"{ROW}\n1,2,oops\n", "line 2, column 3: 'oops' is not a number"),
    "beyond float32": (f"{FEATURES}\n{ROW}\n1,1e39,3\n", "line 3, column 'f1': 1e39 is beyond float32"),
    "far beyond float32": (f"{ROW}\n-1e300,2,3\n", "line 2, column 1: -1e300 is beyond float32"),
    "a short row": (f"{FEATURES}\n{ROW}\n1,2\n", "line 3: 2 fields, expected 3"),
    "a long row": (f"{ROW}\n1,2,3,4\n", "line 2: 4 fields, expected 3"),
    "not UTF-8": (b"\xff\xfe\x00f0,f1\n", "not UTF-8 text"),
    "a NUL byte": (f"{ROW}\n1,\x002,3\n", "line 2, column 2: '\\x002' is not a number"),
    "a field over 128 KiB": (f"{ROW}\n1,{'9' * 200_000},3\n", "field larger than field limit"),
    "wrong feature count, no header": ("1,2\n3,4\n", "expected [batch, seq, 3]"),
}


@pytest.mark.harness
def test_bad_csv_is_one_line_naming_the_file(exported, tmp_path):
    failures = []
    for k, (name, (content, words)) in enumerate(BAD_CSV.items()):
        path = tmp_path / f"bad{k}.csv"
        (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
        r = run(exported["last"], path, *(["--drop", "f0"] if name.startswith("--drop") else []))
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        clean = (r.exit_code == 1 and "Traceback" not in r.output and len(lines) == 1
                 and lines[0].startswith("Error: ") and words in lines[0]
                 and ("cannot read" in lines[0] or "expected [batch" in words)
                 and (str(path) in lines[0] or "expected [batch" in words))
        record("cli", clean, f"predict CSV {name}: exit {r.exit_code}, {r.output.strip()[:200]!r}")
        if not clean:
            failures.append((name, r.output[-300:]))
    assert not failures, failures


@pytest.mark.harness
def test_header_refused_where_the_model_names_no_features(exported, tmp_path):
    model = _without_feature_names(exported["last"], tmp_path / "nameless.onnx")
    x = models.raw_inputs(np.random.default_rng(3), [3])[0]
    r = run(model, write_csv(tmp_path / "h.csv", x))
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    clean = r.exit_code == 1 and len(lines) == 1 and "names no features" in lines[0] and "drop the header" in lines[0]
    record("cli", clean, f"predict CSV header, model without feature_names: {r.output.strip()[:200]!r}")
    assert clean, r.output
    ok = run(model, write_csv(tmp_path / "n.csv", x, header=None))
    assert ok.exit_code == 0, ok.output
    got = np.array([row[1:] for row in list(csv.reader(io.StringIO(ok.stdout)))[1:]], np.float32)
    np.testing.assert_array_equal(got, expected(model, x[None]))
