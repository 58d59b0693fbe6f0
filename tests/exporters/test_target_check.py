"""--target with an explicit --form: the capability table refuses what the target computes wrong (or refuses),
names the form to use, and lets --allow-known-wrong through with a warning. Targets are found by their
cells, so the tests follow the table, not its spelling."""
import itertools

import pytest

from lstm_onnx.core import metadata
from lstm_onnx.exporters.export import (
    ExportError,
    ExportOptions,
    KnownIssueWarning,
    export_checkpoint,
    resolve_options,
    target_warnings,
)
from lstm_onnx.exporters.forms import DTYPES, FORMS
from lstm_onnx.runtimes import capabilities
from lstm_onnx.runtimes.capabilities import CPU, REFUSED, RUNTIMES, WRONG, YES
from tests.helpers import make_checkpoint


def targets(**cells) -> list[str]:
    return [key for key, rt in RUNTIMES.items() if all(getattr(rt, f) == c for f, c in cells.items())]


def first(**cells) -> str:
    found = targets(**cells)
    if not found:
        pytest.skip(f"no runtime in the table has {cells}")
    return found[0]


@pytest.mark.parametrize("cells,model,lengths,verb", [
    (dict(peepholes=WRONG), dict(), False, "computes --form native wrong"),
    (dict(peepholes=YES, sequence_lens=WRONG), dict(), True, "computes --form native wrong"),
    (dict(peepholes=REFUSED), dict(), False, "refuses --form native"),
])
def test_known_wrong_native_is_refused_with_the_fix(tmp_path, cells, model, lengths, verb):
    target = first(**cells)
    fix = capabilities.choose_form(target, peepholes=True, lengths=lengths)
    assert fix != "native"
    out = tmp_path / "m.onnx"
    with pytest.raises(ExportError) as info:
        export_checkpoint(make_checkpoint(**model), out, ExportOptions(target=target, lengths=lengths))
    message = info.value.args[0]
    assert message.startswith(f"{target} {verb} for this model (")
    assert f"use --form {fix}" in message and f"--form auto --target {target}" in message
    assert "--allow-known-wrong" in message and "\n" not in message
    assert not out.exists()


def test_the_fix_it_names_is_accepted():
    target = first(peepholes=WRONG)
    ckpt = make_checkpoint()
    fix = capabilities.choose_form(target, peepholes=True)
    resolved = resolve_options(ckpt, ExportOptions(form=fix, target=target, seq_len=4 if FORMS[fix].static_shapes
                                                   else None))
    assert target_warnings(ckpt, resolved) == []


def test_a_model_without_peepholes_is_not_refused_for_them():
    target = first(peepholes=WRONG, sequence_lens=WRONG)
    ckpt = make_checkpoint(peephole=False)
    assert target_warnings(ckpt, resolve_options(ckpt, ExportOptions(target=target))) == []
    with pytest.raises(ExportError, match=r"\(LSTM sequence_lens: wrong\)"):
        resolve_options(ckpt, ExportOptions(target=target, lengths=True))


def test_allow_known_wrong_writes_it_and_warns_loudly(tmp_path):
    target = first(peepholes=WRONG)
    out, warned = tmp_path / "m.onnx", []
    model = export_checkpoint(make_checkpoint(), out, ExportOptions(target=target, allow_known_wrong=True),
                              warn=warned.append)
    assert out.exists() and any(n.op_type == "LSTM" for n in model.graph.node)
    assert len(warned) == 1 and warned[0].startswith(f"--allow-known-wrong: {target} computes --form native wrong")
    assert "nothing will say so" in warned[0] and "use --form decomposed" in warned[0]
    assert metadata.read(str(out))["target"] == ""  # chosen by hand, not by auto


def test_the_default_warning_is_a_python_warning(tmp_path):
    target = first(peepholes=WRONG)
    with pytest.warns(KnownIssueWarning, match="--allow-known-wrong"):
        export_checkpoint(make_checkpoint(), tmp_path / "m.onnx", ExportOptions(target=target,
                                                                                allow_known_wrong=True))


def test_on_cpu_is_a_warning_not_a_refusal(tmp_path):
    target = first(peepholes=CPU)
    fix = capabilities.choose_form(target, peepholes=True)
    warned = []
    export_checkpoint(make_checkpoint(), tmp_path / "m.onnx", ExportOptions(target=target), warn=warned.append)
    assert warned == [f"{target} and --form native of this model: LSTM with P: on CPU; use --form {fix} "
                      f"(what --form auto --target {target} picks)"]


def test_a_target_that_runs_it_natively_says_nothing(tmp_path):
    target = first(peepholes=YES, sequence_lens=YES)
    warned = []
    export_checkpoint(make_checkpoint(), tmp_path / "m.onnx", ExportOptions(target=target, lengths=True),
                      warn=warned.append)
    assert warned == []


def test_no_target_no_check():
    ckpt = make_checkpoint()
    assert target_warnings(ckpt, resolve_options(ckpt, ExportOptions())) == []


@pytest.mark.parametrize("target", RUNTIMES)
def test_auto_is_never_refused(target):
    """Whatever auto picks, the same check passes it: the table's fallbacks run right where they are used."""
    ckpt_p, ckpt_plain = make_checkpoint(), make_checkpoint(peephole=False)
    for ckpt, lengths, dtype, quantize in itertools.product([ckpt_p, ckpt_plain], [False, True], DTYPES,
                                                            [None, "int8"]):
        if quantize and dtype != "float32":
            continue
        options = ExportOptions(form="auto", target=target, lengths=lengths, dtype=dtype, quantize=quantize)
        if FORMS[capabilities.choose_form(target, ckpt.model_config.peephole, lengths, dtype,
                                          bool(quantize))].static_shapes:
            options.seq_len = 4
        peephole = ckpt.model_config.peephole
        runnable = [name for name, form in FORMS.items() if not any(c in (WRONG, REFUSED) for c in
                    capabilities.shortfalls(target, form.needs(peephole, lengths, dtype, bool(quantize))).values())]
        if not runnable:  # e.g. a runtime that takes no float16 in any form: auto refuses in one line
            with pytest.raises(ExportError, match=target):
                resolve_options(ckpt, options)
            continue
        resolved = resolve_options(ckpt, options)
        assert resolved.picked and resolved.form in FORMS
        assert not any(c in (WRONG, REFUSED) for c in capabilities.shortfalls(
            target, FORMS[resolved.form].needs(peephole, lengths, dtype, bool(quantize))).values())
