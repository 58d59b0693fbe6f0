"""Every runner against the torch reference, over the model variants; and mutations that must fail."""
import itertools

import pytest

from lstm_onnx.core import gates
from lstm_onnx.exporters import weights
from lstm_onnx.exporters.export import ExportOptions, build_model, export_checkpoint
from lstm_onnx.runtimes.verify import verify_checkpoint
from tests.helpers import make_checkpoint

VARIANTS = list(itertools.product([1, 2], [False, True], [True, False], [True, False]))


@pytest.mark.parametrize("num_layers,bidirectional,peephole,batch_first", VARIANTS,
                         ids=lambda v: str(v))
def test_every_runner_matches_torch(tmp_path, num_layers, bidirectional, peephole, batch_first):
    ckpt = make_checkpoint(num_layers=num_layers, bidirectional=bidirectional, peephole=peephole,
                           batch_first=batch_first)
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path)
    report = verify_checkpoint(ckpt, path, batch=3, seq=9)
    assert {r.runner for r in report.rows} == {"numpy", "onnxruntime-cpu", "onnx-reference"}
    assert report.passed, report.to_table()


def _export_unvalidated(ckpt, path, **options):
    """Write the model without export's own parity check, as a buggy exporter would."""
    import onnx

    onnx.save(build_model(ckpt, ExportOptions(**options)), path)


MUTATIONS = {
    "swapped gate order": ("TORCH_TO_ONNX_GATES", (0, 1, 3, 2)),  # f and o exchanged
    "wrong P order": ("TORCH_TO_ONNX_PEEPHOLES", (0, 1, 2)),  # (p_i, p_f, p_o) written as ONNX's (p_i, p_o, p_f)
}


@pytest.mark.parametrize("mutation", list(MUTATIONS) + ["dropped P"])
def test_harness_catches_a_broken_export(tmp_path, monkeypatch, mutation):
    ckpt = make_checkpoint(seed=3, num_layers=2, bidirectional=True)
    if mutation == "dropped P":
        real = weights.layer_weights

        def without_p(*args, **kwargs):
            w = real(*args, **kwargs)
            w.P = None
            return w

        monkeypatch.setattr("lstm_onnx.exporters.export.layer_weights", without_p)
    else:
        name, value = MUTATIONS[mutation]
        monkeypatch.setattr(gates, name, value)
    path = tmp_path / "broken.onnx"
    _export_unvalidated(ckpt, path)
    report = verify_checkpoint(ckpt, path, batch=3, seq=9)
    failed = {r.runner for r in report.rows if not r.passed}
    assert failed == {"onnxruntime-cpu", "onnx-reference"}, report.to_table()


def test_export_refuses_to_write_a_broken_model(tmp_path, monkeypatch):
    from lstm_onnx.exporters.validate import ValidationError

    monkeypatch.setattr(gates, "TORCH_TO_ONNX_PEEPHOLES", (0, 1, 2))
    path = tmp_path / "never.onnx"
    with pytest.raises(ValidationError, match="disagrees with PyTorch"):
        export_checkpoint(make_checkpoint(), path)
    assert not path.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("stateful,lengths", [(True, False), (False, True), (True, True)])
def test_state_and_lengths_inputs_match_torch(tmp_path, stateful, lengths):
    ckpt = make_checkpoint(num_layers=2)
    path = tmp_path / "m.onnx"
    export_checkpoint(ckpt, path, ExportOptions(stateful=stateful, lengths=lengths))
    report = verify_checkpoint(ckpt, path, batch=4, seq=8)
    assert report.passed, report.to_table()
    if lengths:
        assert "onnx-reference" in report.skipped and "sequence_lens" in report.skipped["onnx-reference"]
