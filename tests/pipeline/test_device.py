"""The training device: --device cpu is the CPU loop of before, cuda without CUDA is one line, auto is cpu here,
nccl for CUDA, saved tensors on the CPU; and, on a GPU (`make test-gpu`), a CUDA run equals a CPU one and its
checkpoint resumes, exports and verifies on the CPU, and 2 nccl ranks equal 1 process (2 GPUs)."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from click.testing import CliRunner
from torch import nn

from lstm_onnx.cli.main import cli
from lstm_onnx.pipeline import cell, device, distributed
from lstm_onnx.pipeline.checkpoint import load_checkpoint
from lstm_onnx.pipeline.config import RunConfig, run_config_from_dict
from lstm_onnx.pipeline.data import load_dataset
from lstm_onnx.pipeline.model import SequenceModel
from lstm_onnx.pipeline.train import predict, state_path, train
from tests.pipeline.test_distributed import TOML, as_dtype, assert_same_run, free_port, load_state, quiet, tiny

no_cuda_here = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture
def pytorch_kernel(monkeypatch):
    """The pure-PyTorch step in CPU runs too (what a GPU runs; no compiler run for the kernel)."""
    monkeypatch.setattr(cell, "_compiled", [None])


def run(config: RunConfig, dtype: torch.dtype, out: Path | None, resume: Path | None = None):
    """One training run in this process; the default dtype decides the model's (as in test_distributed)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        return train(config, out, progress=False, log=quiet, dataset=as_dtype(load_dataset(config.data), dtype),
                     resume=resume)
    finally:
        torch.set_default_dtype(before)


def on(where: str, epochs: int = 3) -> RunConfig:
    config = tiny(epochs)
    config.train.device = where
    return config


def reference_weights(config: RunConfig, epochs: int) -> dict:
    """The single-process CPU loop written out by hand (float64): seed, model, Adam, shuffled global batches,
    mean loss, clipping. No validation schedule (config.train.schedule must be none)."""
    assert config.train.schedule == "none" and config.model.head == "last"
    data = as_dtype(load_dataset(config.data), torch.float64)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(config.train.seed)
        model = SequenceModel(config.model)
    finally:
        torch.set_default_dtype(before)
    opt = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    gen = torch.Generator().manual_seed(config.train.seed)
    x, y, b = data.train.x, data.train.y, config.train.batch_size
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen).numpy()
        for s in range(0, len(x), b):
            idx = order[s:s + b]
            loss = nn.functional.mse_loss(model(torch.from_numpy(x[idx]))[0], torch.from_numpy(y[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            opt.step()
    return model.state_dict()


def test_device_cpu_is_the_cpu_loop_of_before(tmp_path, pytorch_kernel):
    config = on("cpu")
    config.train.schedule = "none"
    run(config, torch.float64, tmp_path / "m.pt")
    got, want = load_state(tmp_path / "m.pt")["model"], reference_weights(config, 3)
    assert got.keys() == want.keys()
    for k, v in want.items():  # the same operations in the same order: bit for bit
        assert got[k].dtype == torch.float64 and torch.equal(got[k], v), k


def everything_on_cpu(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.device.type == "cpu"
    if isinstance(obj, dict):
        return all(everything_on_cpu(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(everything_on_cpu(v) for v in obj)
    return True


def assert_saved_on_cpu(out: Path) -> None:
    """Loaded without map_location, a tensor comes back on the device it was saved from."""
    for path in (out, state_path(out)):
        payload = torch.load(path, weights_only=True)
        assert everything_on_cpu(payload), path


def test_checkpoint_and_state_tensors_are_on_the_cpu(tmp_path, pytorch_kernel):
    run(on("cpu", epochs=1), torch.float32, tmp_path / "m.pt")
    assert_saved_on_cpu(tmp_path / "m.pt")
    assert load_checkpoint(tmp_path / "m.pt").config.train.device == "cpu"


def test_to_cpu_keeps_the_structure_and_copies_nothing_on_the_cpu():
    sd = OrderedDict(w=torch.ones(2))
    sd._metadata = {"": {"version": 1}}
    state = {"model": sd, "step": [torch.zeros(1), (3, "x")], "epoch": 4}
    out = device.to_cpu(state)
    assert type(out["model"]) is OrderedDict and out["model"]._metadata == sd._metadata
    assert out["model"]["w"].data_ptr() == sd["w"].data_ptr()  # a CPU tensor is not copied
    assert out["step"][1] == (3, "x") and out["epoch"] == 4 and torch.equal(out["step"][0], torch.zeros(1))


def test_backend_is_nccl_for_cuda_and_gloo_for_the_cpu():
    assert distributed.backend(torch.device("cuda")) == "nccl"
    assert distributed.backend(torch.device("cuda", 1)) == "nccl"
    assert distributed.backend(torch.device("cpu")) == "gloo"


def fake_gpus(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_auto_is_cpu_without_cuda_and_cuda_with_it(monkeypatch):
    if not torch.cuda.is_available():
        assert device.resolve("auto") == torch.device("cpu")  # this machine, unpatched
    fake_gpus(monkeypatch, 0)
    assert device.resolve("auto") == torch.device("cpu")
    assert device.resolve("cpu") == torch.device("cpu")
    fake_gpus(monkeypatch, 2)
    assert device.resolve("auto") == torch.device("cuda", 0)
    assert device.resolve("cpu") == torch.device("cpu")
    rank1 = distributed.World(rank=1, size=2, local_rank=1, local_size=2)
    assert device.resolve("cuda", rank1) == torch.device("cuda", 1)  # cuda:LOCAL_RANK
    fake_gpus(monkeypatch, 1)
    with pytest.raises(ValueError, match="LOCAL_RANK 1 has no GPU: this machine has 1"):
        device.resolve("cuda", rank1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: pytest.fail("the --nproc parent started CUDA"))
    assert device.kind("auto") == device.kind("cuda") == "cuda"


def one_line_error(result, text: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0] == f"Error: {text}", lines[0]


def test_cuda_without_cuda_is_a_one_line_error(tmp_path, monkeypatch):
    fake_gpus(monkeypatch, 0)
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(cli, ["train", "--device", "cuda", "-o", str(out)])
    one_line_error(result, device.NO_CUDA)
    assert device.NO_CUDA == "CUDA is not available: torch.cuda.is_available() is False; use --device cpu"
    (tmp_path / "cuda.toml").write_text(TOML.format(epochs=1) + 'device = "cuda"\n')  # the config's key too
    result = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "cuda.toml"), "-o", str(out)])
    one_line_error(result, device.NO_CUDA)
    with pytest.raises(ValueError, match="CUDA is not available"):  # the library refuses it as well
        train(on("cuda"), None, progress=False, log=quiet)
    assert not out.exists() and not state_path(out).exists()


def test_more_ranks_than_gpus_is_a_one_line_error(tmp_path, monkeypatch):
    fake_gpus(monkeypatch, 2)
    result = CliRunner().invoke(cli, ["train", "--device", "cuda", "--nproc", "4", "-o", str(tmp_path / "m.pt")])
    one_line_error(result, "--nproc 4 with --device cuda needs 4 GPUs, this machine has 2 "
                           "(torch.cuda.device_count()); use --nproc 2 or fewer, or --device cpu")


def test_bad_device_names_are_refused():
    with pytest.raises(ValueError, match=r"device must be one of \('cpu', 'cuda', 'auto'\), got 'gpu'"):
        run_config_from_dict({"train": {"device": "gpu"}})
    result = CliRunner().invoke(cli, ["train", "--device", "gpu"])
    assert result.exit_code == 2 and "'gpu' is not one of 'cpu', 'cuda', 'auto'" in result.output


@no_cuda_here
def test_cli_device_auto_trains_on_the_cpu_here(tmp_path, pytorch_kernel):
    (tmp_path / "tiny.toml").write_text(TOML.format(epochs=1))
    out = tmp_path / "m.pt"
    result = CliRunner().invoke(cli, ["train", "--config", str(tmp_path / "tiny.toml"), "--device", "auto",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "device cuda" not in result.output and f"wrote {out}" in result.output
    assert load_checkpoint(out).config.train.device == "auto"  # as asked: another machine may pick cuda


# --- on a GPU (make test-gpu) ---

def need_gpus(count: int):
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return pytest.mark.skipif(have < count, reason=f"needs {count} CUDA GPU(s), torch sees {have}")


@pytest.fixture
def no_tf32():
    """float32 matmuls in IEEE float32 on the GPU: TF32 (10-bit mantissa) would be a ~1e-3 error per GEMM."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.gpu
@pytest.mark.slow
@need_gpus(1)
def test_cuda_run_equals_the_cpu_run(tmp_path, pytorch_kernel, no_tf32):
    for name, dtype in (("64", torch.float64), ("32", torch.float32)):
        run(on("cpu"), dtype, tmp_path / f"cpu{name}.pt")
        run(on("cuda"), dtype, tmp_path / f"gpu{name}.pt")  # the same initial weights: built on the CPU
    # float64: the same loop; cuBLAS and the CUDA math functions round in other orders than MKL and the CPU's
    # (a few ulps, ~1e-16 relative), the same size of difference as DDP's sum order in test_distributed,
    # whose 1e-10 after 27 Adam steps applies here too
    assert_same_run(tmp_path / "cpu64.pt", tmp_path / "gpu64.pt", atol=1e-10, rtol=0)
    # float32 (TF32 off): each float32 run is off the exact (float64) one by its own rounding; the CPU float32
    # run of this config, started from the float64 run's weights, ends 2.0e-7 from it after 27 steps
    # (losses 1.9e-7 relative; measured, 1 and 2 threads). Two float32 runs that round differently are then
    # within about twice that, 4e-7; 2e-6 leaves a factor 5 for the GPU's coarser expf/tanhf (2 ulps).
    assert_same_run(tmp_path / "cpu32.pt", tmp_path / "gpu32.pt", atol=2e-6, loss_rel=2e-6)


@pytest.mark.gpu
@pytest.mark.slow
@need_gpus(1)
def test_a_cuda_checkpoint_loads_resumes_exports_and_verifies_on_the_cpu(tmp_path, pytorch_kernel, no_tf32):
    out = tmp_path / "m.pt"
    ckpt = run(on("cuda", epochs=2), torch.float32, out)
    assert_saved_on_cpu(out)
    assert everything_on_cpu(ckpt.state_dict)
    loaded = load_checkpoint(out)
    x = as_dtype(load_dataset(loaded.config.data), torch.float32).test.x
    on_gpu = predict(loaded.build_model().cuda(), x)  # the same weights, scored on each device
    np.testing.assert_allclose(predict(loaded.build_model(), x), on_gpu, rtol=0, atol=1e-5)  # float32 sums
    resumed_config = on("cpu", epochs=3)
    resumed = run(resumed_config, torch.float32, out, resume=state_path(out))  # CUDA state, CPU run
    assert resumed.metrics["epochs_run"] == 3 and load_state(out)["optimizer"]["state"][0]["step"] == 27
    runner = CliRunner()
    res = runner.invoke(cli, ["export", str(out), "-o", str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["verify", str(out), str(tmp_path / "m.onnx"), "--runner", "onnxruntime-cpu"])
    assert res.exit_code == 0, res.output


def _nccl_rank(rank, world, port, out):
    torch.cuda.set_device(rank)
    torch.distributed.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=world)
    try:
        run(on("cuda"), torch.float64, out)
    finally:
        distributed.shutdown()  # collects train's DDP module, then leaves the group


@pytest.mark.gpu
@pytest.mark.slow
@need_gpus(2)
def test_two_nccl_ranks_equal_one_cuda_process(tmp_path, pytorch_kernel):
    run(on("cuda"), torch.float64, tmp_path / "one.pt")
    mp.spawn(_nccl_rank, args=(2, free_port(), tmp_path / "two.pt"), nprocs=2, join=True)
    state = load_state(tmp_path / "two.pt")
    assert len(state["cuda_rng_ranks"]) == 2  # each rank's own GPU dropout stream was saved
    # float64: only the order of the gradient sums differs (per-rank mean, then nccl's average)
    assert_same_run(tmp_path / "one.pt", tmp_path / "two.pt", atol=1e-10, rtol=0)
