"""The CLI's bad-input corpus: bad files (built once, by `build`) and the table of commands run on them.

A case is a command line whose `{name}` placeholders are files from `build`, and the words its one error line
must hold: the file or argument it names and what was expected. `keep` names a file the command must leave
byte for byte as it was (a good checkpoint that a refused `train -o` must not overwrite).
"""
from __future__ import annotations

import io
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests import models

TRAIN_TOML = ("[model]\ninput_size = 2\nhidden_size = 4\noutput_size = 2\n"
              "[data]\nnum_features = 2\nwindow = 4\nlength = 120\n[train]\nepochs = 1\n")


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]
    expect: tuple[str, ...]  # each must be in the error line ({name} placeholders allowed)
    keep: str = ""  # a file the command must leave untouched


def fill(files: dict[str, Path], items) -> list[str]:
    return [str(a).format(**{k: str(v) for k, v in files.items()}) for a in items]


# -- files ------------------------------------------------------------------------------------------------

def build(d: Path) -> dict[str, Path]:
    """Good artifacts and bad variants of each, under `d`; name -> path."""
    import torch

    d.mkdir(parents=True, exist_ok=True)
    f: dict[str, Path] = {"dir": d, "nope": Path("/proc/nope")}
    ckpt = models.checkpoint()
    ckpt.save(d / "good.pt")
    models.export(ckpt, d / "good.onnx")
    f.update(ckpt=d / "good.pt", model=d / "good.onnx")
    good_pt, good_onnx = f["ckpt"].read_bytes(), f["model"].read_bytes()
    x = np.random.default_rng(0).normal(5, 2, (2, 5, models.F)).astype(np.float32)
    y = models.torch_reference(ckpt, x).astype(np.float32)

    def put(name: str, data: bytes) -> None:
        (d / name).write_bytes(data)
        f[name.replace(".", "_")] = d / name

    for ext, good in ((".pt", good_pt), (".onnx", good_onnx)):
        put("empty" + ext, b"")
        put("trunc" + ext, good[:len(good) // 2])
        put("garbage" + ext, bytes(range(256)) * 8)
    put("onnx_as.pt", good_onnx)
    # Still parses, but a name is not UTF-8 (protobuf then hands out bytes): what random bit flips found.
    assert b"lstm_onnx.version" in good_onnx and b'"\x04LSTM' in good_onnx
    put("utf8_key.onnx", good_onnx.replace(b"lstm_onnx.version", b"lstm_onnx.versio\xe1", 1))
    put("utf8_op.onnx", good_onnx.replace(b'"\x04LSTM', b'"\x04LS\xe1M', 1))
    put("ckpt_as.onnx", good_pt)
    torch.save({"weights": torch.zeros(2)}, d / "foreign.pt")
    f["foreign_pt"] = d / "foreign.pt"
    damaged = torch.load(d / "good.pt", weights_only=True)
    damaged["config"]["model"]["hidden_size"] = 5
    torch.save(damaged, d / "damaged.pt")
    f["damaged_pt"] = d / "damaged.pt"
    put("pickle.pt", b"\x80\x04cos\nsystem\n(S'echo owned'\ntR.")
    _bad_models(d, f, put)
    _bad_arrays(d, f, put, x, y)
    _bad_csvs(d, f, put)
    _bad_configs(d, f)
    return f


def _bad_models(d: Path, f: dict, put) -> None:
    import onnx

    def variant(name: str, change) -> None:
        model = onnx.load(str(f["model"]))
        change(model)
        onnx.save(model, d / name)
        f[name.replace(".", "_")] = d / name

    def meta(key: str, value: str):
        def change(model):
            props = {p.key: p for p in model.metadata_props}
            if "lstm_onnx." + key in props:
                props["lstm_onnx." + key].value = value
            else:
                model.metadata_props.add(key="lstm_onnx." + key, value=value)
        return change

    variant("meta_json.onnx", meta("normalization", "{not json"))
    variant("meta_config.onnx", meta("config", "[1, 2]"))
    variant("meta_norm_list.onnx", meta("normalization", "[1, 2]"))
    variant("meta_norm_len.onnx", meta("normalization", json.dumps(
        {"input_mean": [0.0], "input_std": [1.0], "target_mean": [0.0], "target_std": [1.0]})))
    variant("meta_norm_keys.onnx", meta("normalization", json.dumps({"input_mean": [0.0] * models.F})))
    variant("meta_head.onnx", meta("config", json.dumps({"model": {"head": 3}})))
    variant("meta_seq.onnx", meta("seq_len", '"abc"'))
    variant("meta_names.onnx", meta("feature_names", "5"))

    def rename(old: str, new: str, where: str):
        def change(model):
            getattr(model.graph, where)[0].name = new
            for node in model.graph.node:
                node.input[:] = [new if n == old else n for n in node.input]
                node.output[:] = [new if n == old else n for n in node.output]
        return change

    variant("renamed_in.onnx", rename("x", "features", "input"))
    variant("renamed_out.onnx", rename("y", "out", "output"))
    ext = d / "ext"
    ext.mkdir()
    model = onnx.load(str(f["model"]))
    onnx.save(model, ext / "model.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.onnx.data", size_threshold=300)  # the LSTM weights
    f["ext_model"] = ext / "model.onnx"


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def zip_bomb(member: str = "x.npy", gib: int = 1) -> bytes:
    """An .npz whose member holds `gib` GiB of float32 zeros, deflated to a few MB."""
    buf = io.BytesIO()
    n = (gib << 30) // 4
    zeros = b"\0" * (4 << 20)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        with z.open(member, "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
            for _ in range(n * 4 // len(zeros)):
                fh.write(zeros)
    return buf.getvalue()


def _bad_arrays(d: Path, f: dict, put, x: np.ndarray, y: np.ndarray) -> None:
    put("in.npz", npz_bytes(x=x))
    put("out.npz", npz_bytes(y=y))
    put("x.npy", npy_bytes(x[:1]))
    good_npz = f["in_npz"].read_bytes()
    put("empty.npz", b"")
    put("garbage.npz", bytes(range(256)) * 8)
    put("trunc.npz", good_npz[:len(good_npz) // 2])
    put("plain.npz", npy_bytes(x))
    put("f64.npz", npz_bytes(x=x.astype(np.float64)))
    put("rank.npz", npz_bytes(x=x[0]))
    put("shape.npz", npz_bytes(x=np.zeros((2, 5, models.F + 2), np.float32)))
    put("name.npz", npz_bytes(features=x))
    put("extra.npz", npz_bytes(x=x, z=x))
    put("object.npz", npz_bytes(x=np.array([{"a": 1}], dtype=object)))
    put("complex.npz", npz_bytes(x=x.astype(np.complex64)))
    put("bomb.npz", zip_bomb())
    put("out_shape.npz", npz_bytes(y=np.zeros((2, 7), np.float32)))
    put("out_name.npz", npz_bytes(z=y))
    put("out_rank.npz", npz_bytes(y=y[0]))
    put("out_str.npz", npz_bytes(y=np.array(["a", "b"])))
    put("empty.npy", b"")
    put("garbage.npy", bytes(range(256)) * 8)
    good_npy = f["x_npy"].read_bytes()
    put("trunc.npy", good_npy[:len(good_npy) - 7])
    assert b"(1, 5, 3)" in good_npy
    put("header.npy", good_npy.replace(b"(1, 5, 3)", b"(1, 5, 3 ", 1))  # tokenize's TokenError, found by fuzzing
    put("complex.npy", npy_bytes((x + 1j * x).astype(np.complex64)))
    put("object.npy", npy_bytes(np.array([{"a": 1}], dtype=object)))
    put("str.npy", npy_bytes(np.array([["a", "b", "c"]])))
    put("rank1.npy", npy_bytes(np.zeros(3, np.float32)))
    put("rank4.npy", npy_bytes(np.zeros((1, 2, 5, 3), np.float32)))
    put("feat.npy", npy_bytes(np.zeros((1, 5, models.F + 2), np.float32)))
    put("nobatch.npy", npy_bytes(np.zeros((0, 5, models.F), np.float32)))
    put("huge.npy", npy_bytes(np.full((1, 5, models.F), 1e39)))
    put("big.npy", npy_bytes(np.full((1, 5, models.F), 3e38)))  # float32, but not once normalized
    put("x.csv", b"1,2,3\n4,5,6\n")
    put("text.csv", b"a,b,c\n1,2,3\n")
    put("empty.csv", b"")
    put("binary.csv", b"\xff\xfe\x00\x81" * 64)
    put("ragged.csv", b"1,2,3\n4,5\n")


def _bad_csvs(d: Path, f: dict, put) -> None:
    rows = "\n".join(f"{np.sin(t / 5):.4f},{np.cos(t / 7):.4f}" for t in range(120))
    table = {
        "1e39": f"a,b\n{rows}\n1e39,0.5\n", "1e300": f"a,b\n{rows}\n0.5,-1e300\n",
        "inf": f"a,b\n{rows}\ninf,0.5\n", "field": f"a,b\n{rows}\n{'1' * (129 << 10)},0.5\n",
        "text": f"a,b\n{rows}\nhello,0.5\n", "ragged": f"a,b\n{rows}\n0.5\n", "empty": "",
        "header": "a,b\n", "short": "a,b\n1,2\n3,4\n",
    }
    for name, text in table.items():
        put(f"train_{name}.csv", text.encode())
    put("train_binary.csv", b"a,b\n" + b"\xff\xfe\x81,1\n" * 200)
    put("good.csv", f"a,b\n{rows}\n".encode())
    for name in [*table, "binary"]:
        (d / f"csv_{name}.toml").write_text(TRAIN_TOML.replace("[data]\n", f"[data]\ntask = \"csv\"\n"
                                                                           f"csv = \"train_{name}.csv\"\n"))
        f[f"csv_{name}"] = d / f"csv_{name}.toml"


def _bad_configs(d: Path, f: dict) -> None:
    table = {
        "tiny": TRAIN_TOML,
        "notoml": "[model\nhidden_size = ",
        "epochs_float": TRAIN_TOML.replace("epochs = 1", "epochs = 1.5"),
        "epochs_zero": TRAIN_TOML.replace("epochs = 1", "epochs = 0"),
        "epochs_str": TRAIN_TOML.replace("epochs = 1", 'epochs = "2"'),
        "epochs_bool": TRAIN_TOML.replace("epochs = 1", "epochs = true"),
        "threads_neg": TRAIN_TOML + "threads = -1\n",
        "hidden_str": TRAIN_TOML.replace("hidden_size = 4", 'hidden_size = "big"'),
        "unknown": TRAIN_TOML + "epoch = 3\n",
        "section": "model = 3\n",
        "lr_str": TRAIN_TOML + 'lr = "fast"\n',
        "features_str": TRAIN_TOML.replace("[data]\n", '[data]\nfeatures = "a"\n'),
    }
    for name, text in table.items():
        (d / f"cfg_{name}.toml").write_text(text)
        f[f"cfg_{name}"] = d / f"cfg_{name}.toml"
    (d / "cfg_binary.toml").write_bytes(b"\xff\xfe[model]\x00")
    f["cfg_binary"] = d / "cfg_binary.toml"


def victim(files: dict[str, Path]) -> Path:
    """A fresh copy of the good checkpoint, for cases that must not overwrite it."""
    path = files["dir"] / "victim.pt"
    shutil.copyfile(files["ckpt"], path)
    return path


# -- the table --------------------------------------------------------------------------------------------

def C(name, args, *expect, keep=""):
    return Case(name, tuple(args.split()) if isinstance(args, str) else tuple(args), tuple(expect), keep)


CHECKPOINT_FILES = {"empty_pt": "not a readable checkpoint", "trunc_pt": "not a readable checkpoint",
                    "garbage_pt": "not a readable checkpoint", "onnx_as_pt": "not a readable checkpoint",
                    "foreign_pt": "not an lstm-onnx-pipeline checkpoint", "damaged_pt": "damaged",
                    "pickle_pt": "not a readable checkpoint"}
MODEL_FILES = {"empty_onnx": "not", "trunc_onnx": "not a readable ONNX model",
               "utf8_key_onnx": "not UTF-8", "utf8_op_onnx": "not UTF-8",
               "garbage_onnx": "not a readable ONNX model", "ckpt_as_onnx": "not a readable ONNX model"}
BROKEN_METADATA = {"meta_json_onnx": "lstm_onnx.normalization", "meta_config_onnx": "lstm_onnx.config",
                   "meta_norm_list_onnx": "lstm_onnx.normalization", "meta_norm_len_onnx": "lstm_onnx.normalization",
                   "meta_norm_keys_onnx": "lstm_onnx.normalization", "meta_head_onnx": "lstm_onnx.config",
                   "meta_seq_onnx": "lstm_onnx.seq_len", "meta_names_onnx": "lstm_onnx.feature_names"}
INPUTS_NPZ = {"empty_npz": "not an .npz", "garbage_npz": "not an .npz", "trunc_npz": "not a readable .npz",
              "plain_npz": "not an .npz", "f64_npz": "float32", "rank_npz": "3 dims", "shape_npz": "shape",
              "name_npz": "model's inputs", "extra_npz": "model's inputs", "object_npz": "not a readable .npz",
              "complex_npz": "float32", "bomb_npz": "GiB"}
EXPECTED_NPZ = {"empty_npz": "not an .npz", "trunc_npz": "not a readable .npz", "plain_npz": "not an .npz",
                "out_shape_npz": "shape", "out_name_npz": "'y'", "out_rank_npz": "shape",
                "out_str_npz": "numbers", "bomb_npz": "GiB"}
PREDICT_INPUTS = {"empty_npy": "cannot read", "garbage_npy": "cannot read", "trunc_npy": "cannot read",
                  "header_npy": "cannot read",
                  "complex_npy": "complex", "object_npy": "cannot read", "str_npy": "numbers",
                  "rank1_npy": "[batch, seq, 3]", "rank4_npy": "[batch, seq, 3]", "feat_npy": "[batch, seq, 3]",
                  "nobatch_npy": "empty", "huge_npy": "float32", "text_csv": "cannot read",
                  "empty_csv": "cannot read", "binary_csv": "cannot read", "ragged_csv": "cannot read"}
TRAIN_CSVS = {"1e39": ("line 122", "'a'", "float32"), "1e300": ("line 122", "'b'", "float32"),
              "inf": ("line 122", "'a'", "infinite"), "field": ("line 122", "field"),
              "text": ("line 122", "'a'", "not a number"), "ragged": ("line 122", "fields"),
              "empty": ("empty",), "header": ("usable rows",), "short": ("usable rows",),
              "binary": ("UTF-8",)}
CONFIGS = {"notoml": "not valid TOML", "epochs_float": "epochs must be an integer",
           "epochs_zero": "epochs must be >= 1", "epochs_str": "epochs must be an integer",
           "epochs_bool": "epochs must be an integer", "threads_neg": "threads must be >= 0",
           "hidden_str": "hidden_size must be an integer", "unknown": "unknown key", "section": "[model]",
           "lr_str": "lr must be a number", "features_str": "features must be a list", "binary": "UTF-8"}


def cases() -> list[Case]:
    out = []
    for name, words in CHECKPOINT_FILES.items():
        out += [C(f"export {name}", f"export {{{name}}} -o {{dir}}/never.onnx", f"{{{name}}}", words),
                C(f"report {name}", f"report {{{name}}} -o {{dir}}/never", f"{{{name}}}", words),
                C(f"verify {name}", f"verify {{{name}}} {{model}}", f"{{{name}}}", words)]
    for name, words in MODEL_FILES.items():
        out += [C(f"{cmd} {name}", f"{cmd} {{{name}}}{tail}", f"{{{name}}}", words)
                for cmd, tail in (("inspect", ""), ("verify", ""), ("predict", " {x_npy}"))]
    for name, words in BROKEN_METADATA.items():
        out += [C(f"{cmd} {name}", f"{cmd} {{{name}}}{tail}", f"{{{name}}}", words)
                for cmd, tail in (("inspect", ""), ("predict", " {x_npy}"), ("verify", ""))]
    out += [C("predict renamed_in", "predict {renamed_in_onnx} {x_npy}", "{renamed_in_onnx}", "input `x`"),
            C("predict renamed_out", "predict {renamed_out_onnx} {x_npy}", "{renamed_out_onnx}", "output `y`")]
    for name, words in INPUTS_NPZ.items():
        out.append(C(f"verify --inputs {name}", f"verify {{model}} --inputs {{{name}}}", f"{{{name}}}", words))
    out.append(C("verify --inputs missing", "verify {model} --inputs {dir}/none.npz", "{dir}/none.npz", "not found"))
    for name, words in EXPECTED_NPZ.items():
        out.append(C(f"verify --expected {name}", f"verify {{model}} --inputs {{in_npz}} --expected {{{name}}}",
                     f"{{{name}}}", words))
    for name, words in PREDICT_INPUTS.items():
        out.append(C(f"predict {name}", f"predict {{model}} {{{name}}}", f"{{{name}}}", words))
    for name, words in TRAIN_CSVS.items():
        out.append(C(f"train csv {name}", f"train --config {{csv_{name}}} -o {{dir}}/never.pt",
                     f"train_{name}.csv", *words))
    for name, words in TRAIN_CSVS.items():  # the same files through `train --csv`, with no config
        out.append(C(f"train --csv {name}", f"train --csv {{train_{name}_csv}} --target b --window 4 -o "
                     f"{{dir}}/never.pt", f"train_{name}.csv", *words))
    for name, words in CONFIGS.items():
        out.append(C(f"train config {name}", f"train --config {{cfg_{name}}} -o {{dir}}/victim.pt",
                     f"{{cfg_{name}}}", words, keep="victim.pt"))
    out += _data_tool_cases()
    out += _module_cases()
    out += _argument_cases()
    out += _deploy_cases()
    out += _unwritable_cases()
    return out


def _data_tool_cases() -> list[Case]:
    """gates and check-data: values beyond float32 (refused before the cast), folders that cannot be made,
    a CSV with nothing left to check, a device instead of a file."""
    return [
        C("gates huge_npy", "gates {ckpt} {huge_npy}", "{huge_npy}", "beyond float32"),
        C("gates big_npy", "gates {ckpt} {big_npy}", "{big_npy}", "once normalized"),
        C("predict big_npy", "predict {model} {big_npy}", "{big_npy}", "once normalized"),
        C("gates --lstmvis /proc", "gates {ckpt} {x_npy} --lstmvis {nope}/x", "{nope}/x", "cannot write"),
        C("gates -o /proc", "gates {ckpt} {x_npy} -o {nope}/x", "{nope}/x", "cannot write"),
        C("check-data --drop every column", "check-data {good_csv} --drop a,b", "{good_csv}", "no input column"),
        C("check-data /dev/zero", "check-data /dev/zero", "CSV not found", "/dev/zero"),
        C("check-data missing", "check-data {dir}/none.csv", "CSV not found", "{dir}/none.csv"),
    ]


def _module_cases() -> list[Case]:
    """export --module and verify --module: the spec, the options that go with it, the weights."""
    ex = "export -o {dir}/never.onnx"
    return [
        C("export --module no colon", f"{ex} --module tests.models --input-shape 2,8,3", "--module",
          "MODULE:FACTORY"),
        C("export --module not importable", f"{ex} --module no_such_pkg_q:make --input-shape 2,8,3",
          "cannot import no_such_pkg_q"),
        C("export --module not a module", f"{ex} --module tests.models:checkpoint --input-shape 2,8,3",
          "not a torch.nn.Module"),
        C("export --module no --input-shape", f"{ex} --module tests.models:checkpoint", "--input-shape"),
        C("export --input-shape bad", f"{ex} --module tests.models:checkpoint --input-shape 2,0,3",
          "--input-shape", "B,S,F"),
        C("export checkpoint and --module", f"export {{ckpt}} -o {{dir}}/never.onnx --module a:b "
          "--input-shape 2,8,3", "not both"),
        C("export --module --stateful", f"{ex} --module a:b --input-shape 2,8,3 --stateful", "--stateful"),
        C("export --module --state-dict missing", f"{ex} --module a:b --input-shape 2,8,3 --state-dict "
          "{dir}/none.pt", "{dir}/none.pt", "not found"),
        C("export no checkpoint", "export -o {dir}/never.onnx", "CHECKPOINT"),
        C("verify --module with a checkpoint", "verify {ckpt} {model} --module a:b", "--module", "CHECKPOINT"),
        C("verify --state-dict alone", "verify {model} --state-dict {ckpt}", "--state-dict", "--module"),
    ]


def _deploy_cases() -> list[Case]:
    """`deploy triton`, both backends: the model file, the options (config.pbtxt's field widths) and -o."""
    repo = "-o {dir}/never_repo"
    out = [C(f"deploy triton {backend} {name}", f"deploy triton {{{name}}} {repo} --backend {backend}",
             f"{{{name}}}", words)
           for backend in ("onnxruntime", "python") for name, words in MODEL_FILES.items()]
    out += [C(f"deploy triton {name}", f"deploy triton {{{name}}} {repo}", f"{{{name}}}", words)
            for name, words in BROKEN_METADATA.items()]
    out += [C("deploy triton missing", f"deploy triton {{dir}}/none.onnx {repo}", "{dir}/none.onnx", "not found"),
            C("deploy triton python missing", f"deploy triton {{dir}}/none.onnx {repo} --backend python",
              "{dir}/none.onnx", "not found"),
            C("deploy triton renamed_in", f"deploy triton {{renamed_in_onnx}} {repo}", "{renamed_in_onnx}",
              "input x"),
            C("deploy triton --max-batch-size 0", f"deploy triton {{model}} {repo} --max-batch-size 0",
              "max batch size 0", ">= 1"),
            C("deploy triton --max-batch-size int32+1", f"deploy triton {{model}} {repo} --max-batch-size 2147483648",
              "max batch size 2147483648", "<= 2147483647"),
            C("deploy triton --max-queue-size uint32+1", f"deploy triton {{model}} {repo} --max-queue-size "
              "4294967296", "max queue size", "<= 4294967295"),
            C("deploy triton --max-queue-delay-us -1", f"deploy triton {{model}} {repo} --max-queue-delay-us -1",
              "max queue delay", ">= 0"),
            C("deploy triton --max-queue-delay-us uint64+1", f"deploy triton {{model}} {repo} "
              "--max-queue-delay-us 18446744073709551616", "max queue delay", "<= 18446744073709551615"),
            C("deploy triton --max-batch-size abc", f"deploy triton {{model}} {repo} --max-batch-size abc",
              "--max-batch-size", "abc"),
            C("deploy triton --preferred-batch-size", f"deploy triton {{model}} {repo} --preferred-batch-size 65",
              "preferred batch sizes [65]", "1..64"),
            C("deploy triton --instance-count 0", f"deploy triton {{model}} {repo} --instance-count 0",
              "instance count 0"),
            C("deploy triton --instance-kind tpu", f"deploy triton {{model}} {repo} --instance-kind tpu",
              "--instance-kind", "tpu"),
            C("deploy triton --backend nope", f"deploy triton {{model}} {repo} --backend nope", "--backend", "nope"),
            C("deploy triton --name a/b", f"deploy triton {{model}} {repo} --name a/b", "model name", "'-' and '_'"),
            C("deploy triton --gpu without gpu", f"deploy triton {{model}} {repo} --gpu 0", "--instance-kind gpu"),
            C("deploy triton gpu with P", f"deploy triton {{model}} {repo} --instance-kind gpu",
              "--form auto --target ort-cuda"),
            C("deploy triton python gpu with P", f"deploy triton {{model}} {repo} --backend python "
              "--instance-kind gpu", "--form auto --target ort-cuda"),
            C("deploy triton -o not empty", "deploy triton {model} -o {dir}", "{dir}", "not empty", "--force"),
            C("deploy triton -o not a repository", "deploy triton {model} -o {dir} --force", "{dir}",
              "only a model repository"),
            C("deploy triton -o a file", "deploy triton {model} -o {x_npy}", "{x_npy}", "is a file"),
            C("deploy triton -o /proc", "deploy triton {model} -o {nope}/repo", "{nope}/repo", "cannot write"),
            C("deploy triton python -o /proc", "deploy triton {model} -o {nope}/repo --backend python",
              "{nope}/repo", "cannot write"),
            C("deploy triton no -o", "deploy triton {model}", "--out")]
    return out


def _argument_cases() -> list[Case]:
    tiny = "train --config {cfg_tiny} -o {dir}/victim.pt"
    return [
        C("train --epochs 0", f"{tiny} --epochs 0", "--epochs", ">= 1", keep="victim.pt"),
        C("train --epochs -3", f"{tiny} --epochs -3", "--epochs", ">= 1", keep="victim.pt"),
        C("train --epochs 1.5", f"{tiny} --epochs 1.5", "--epochs", "integer", keep="victim.pt"),
        C("train --threads -1", f"{tiny} --threads -1", "--threads", ">= 0", keep="victim.pt"),
        C("train --seed -1", f"{tiny} --seed -1", "--seed", ">= 0", keep="victim.pt"),
        C("train --resume without state", "train --resume -o {dir}/nostate.pt", "nostate.pt.state"),
        C("verify --batch 0", "verify {model} --batch 0", "--batch", "x>=1"),
        C("verify --batch -1", "verify {model} --batch -1", "--batch", "x>=1"),
        C("verify --batch huge", "verify {model} --batch 1000000000", "--batch", "at most"),
        C("verify --seq -5", "verify {model} --seq -5", "--seq", "x>=1"),
        C("verify --seq huge", "verify {model} --seq 1000000000000", "--seq", "at most"),
        C("verify --atol -1", "verify {model} --atol -1", "--atol", ">= 0"),
        C("verify --rtol nan", "verify {model} --rtol nan", "--rtol", ">= 0"),
        C("verify too many paths", "verify {ckpt} {model} {model}", "[CHECKPOINT] MODEL"),
        C("verify --provider-option", "verify {model} --provider-option cuda", "--provider-option"),
        C("verify --runner unknown", "verify {model} --runner nope", "--runner", "nope"),
        C("export --seq-len -1", "export {ckpt} -o {dir}/never.onnx --form unrolled --seq-len -1",
          "--seq-len", "1<=x<=4096"),
        C("export --batch-size 0", "export {ckpt} -o {dir}/never.onnx --form unrolled --seq-len 4 --batch-size 0",
          "--batch-size", "1<=x<=1024"),
        C("export --batch-size huge", "export {ckpt} -o {dir}/never.onnx --form unrolled --seq-len 4 "
          "--batch-size 100000000", "--batch-size", "1<=x<=1024"),
        C("export --seq-len huge", "export {ckpt} -o {dir}/never.onnx --form unrolled --seq-len 100000000",
          "--seq-len", "1<=x<=4096"),
        C("export --opset 0", "export {ckpt} -o {dir}/never.onnx --opset 0", "opset"),
        C("export --opset 999", "export {ckpt} -o {dir}/never.onnx --opset 999", "opset"),
        C("export --target nope", "export {ckpt} -o {dir}/never.onnx --target nope", "nope"),
        C("export --form nope", "export {ckpt} -o {dir}/never.onnx --form nope", "--form", "nope"),
        C("predict --provider nope", "predict {model} {x_npy} --provider nope", "nope"),
        C("bench --threads -1", "bench -o {dir}/bench --threads -1", "--threads", ">= 1"),
        C("bench --threads abc", "bench -o {dir}/bench --threads 1,abc", "--threads", "abc"),
        C("bench --threads empty", "bench -o {dir}/bench --threads ,", "--threads"),
        C("bench --case bad", "bench -o {dir}/bench --case streaming", "--case", "streaming"),
        C("bench --case zero", "bench -o {dir}/bench --case big=0x5", "--case", "big=0x5"),
        C("bench --case huge", "bench -o {dir}/bench --case big=100000x100000", "--case", "at most"),
        C("bench --hidden 0", "bench -o {dir}/bench --hidden 0", "--hidden", "x>=1"),
        C("bench --layers 0", "bench -o {dir}/bench --layers 0", "--layers", "x>=1"),
        C("bench --input-size -1", "bench -o {dir}/bench --input-size -1", "--input-size", "x>=1"),
        C("bench --min-time -1", "bench -o {dir}/bench --min-time -1", "--min-time", "x>=0"),
        C("bench --gemm-n 0", "bench -o {dir}/bench --gemm-n 0", "--gemm-n", "x>=1"),
        C("bench --form nope", "bench -o {dir}/bench --form nope", "nope"),
        C("serve --port 70000", "serve {model} --port 70000", "port", "65535"),
        C("serve --port -1", "serve {model} --port -1", "port", "65535"),
        C("serve --threads -1", "serve {model} --threads -1", "threads", ">= 1"),
        C("serve --workers 0", "serve {model} --workers 0", "workers", ">= 1"),
        C("serve --max-batch 0", "serve {model} --max-batch 0", "max_batch", ">= 1"),
        C("serve meta_json", "serve {meta_json_onnx}", "{meta_json_onnx}", "lstm_onnx.normalization"),
        C("serve meta_config", "serve {meta_config_onnx}", "{meta_config_onnx}", "lstm_onnx.config"),
        C("serve trunc", "serve {trunc_onnx}", "{trunc_onnx}", "not a readable ONNX model"),
    ]


def _unwritable_cases() -> list[Case]:
    no = "{nope}"
    return [
        C("export -o /proc", f"export {{ckpt}} -o {no}/x.onnx", f"{no}/x.onnx", "cannot write"),
        C("export -o a folder", "export {ckpt} -o {dir}", "{dir}", "is a directory"),
        C("train -o /proc", f"train --config {{cfg_tiny}} -o {no}/x.pt", f"{no}/x.pt", "cannot write"),
        C("train -o a folder", "train --config {cfg_tiny} -o {dir}", "{dir}", "is a directory"),
        C("predict -o /proc", f"predict {{model}} {{x_npy}} -o {no}/y.csv", f"{no}/y.csv", "cannot write"),
        C("predict -o a folder", "predict {model} {x_npy} -o {dir}", "{dir}", "is a directory"),
        C("verify --save-inputs /proc", f"verify {{model}} --save-inputs {no}/in.npz", f"{no}/in.npz",
          "cannot write"),
        C("verify --save-outputs /proc", f"verify {{model}} --runner onnx-reference --save-outputs {no}/o.npz",
          f"{no}/o.npz", "cannot write"),
        C("report -o /proc", f"report {{ckpt}} -o {no}/r", f"{no}/r", "cannot write"),
        C("report -o a file", "report {ckpt} -o {x_npy}", "{x_npy}", "is a file"),
        C("bench -o /proc", f"bench -o {no}/b --threads 1 --case s=1x2 --hidden 4 --input-size 2 --min-time 0",
          f"{no}/b", "cannot write"),
    ]


# Commands that write an artifact, for the full-disk cases: (name, args, the path it must not leave behind).
FULL_DISK = [
    ("export", "export {ckpt} -o {full}/x.onnx", "{full}/x.onnx"),
    ("train", "train --config {cfg_tiny} -o {full}/x.pt", "{full}/x.pt"),
    ("predict -o", "predict {model} {x_npy} -o {full}/y.npy", "{full}/y.npy"),
    ("verify --save-inputs", "verify {model} --runner onnx-reference --save-inputs {full}/in.npz", "{full}/in.npz"),
]
