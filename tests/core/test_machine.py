"""The machine fingerprint from fake /proc/cpuinfo and cgroup files."""
import json

from lstm_onnx.core import machine

AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma bmi2
processor\t: 1
model name\t: AMD EPYC 7B12
flags\t\t: fpu sse2 avx avx2 fma bmi2 avx512f
"""
VNNI = """model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: avx2 avx512f avx512bw avx512_vnni amx_tile amx_int8 avx512vl
"""


def test_cpu_model_and_isa_from_the_first_processor(tmp_path):
    (tmp_path / "cpuinfo").write_text(AVX2_ONLY)
    cpu = machine.cpu_info(tmp_path / "cpuinfo")
    assert cpu == {"model": "AMD EPYC 7B12", "isa": ["avx2"]}  # processor 1's avx512f is not processor 0's
    (tmp_path / "cpuinfo").write_text(VNNI)
    assert machine.cpu_info(tmp_path / "cpuinfo")["isa"] == ["avx2", "avx512f", "avx512bw", "avx512_vnni",
                                                             "amx_tile", "amx_int8"]


def test_int8_gemm_path_follows_the_isa():
    assert machine.int8_gemm_path(["avx2"]).startswith("AVX2/AVX-512BW")
    assert machine.int8_gemm_path(["avx2", "avx512f", "avx512bw"]).startswith("AVX2/AVX-512BW")
    assert machine.int8_gemm_path(["avx2", "avx_vnni"]).startswith("VNNI")
    assert machine.int8_gemm_path(["avx2", "avx512bw", "avx512_vnni"]).startswith("VNNI")
    assert machine.int8_gemm_path([]).startswith("no AVX2")


def test_fingerprint_shape_and_quota(tmp_path, monkeypatch):
    (tmp_path / "cpuinfo").write_text(AVX2_ONLY)
    (tmp_path / "cg").mkdir()
    (tmp_path / "cg" / "cpu.max").write_text("150000 100000\n")
    monkeypatch.setattr(machine.threads, "affinity_cores", lambda: 8)
    fp = machine.fingerprint(tmp_path / "cpuinfo", tmp_path / "cg")
    assert fp["cpu"]["model"] == "AMD EPYC 7B12" and fp["cpu"]["isa"] == ["avx2"]
    assert fp["cores"]["affinity"] == 8 and fp["cores"]["quota"] == 1.5 and fp["cores"]["usable"] == 2
    assert fp["versions"]["numpy"] and "python" in fp["versions"]
    assert "CPUExecutionProvider" in fp["ort_providers"]
    assert set(fp["threads"]) >= {"usable_cores", "omp_wait_policy", "ort_spinning"}
    json.dumps(fp)  # goes into JSON reports and metadata as it is
    line = machine.summary(fp)
    assert "AMD EPYC 7B12" in line and "avx2" in line and "2 usable core(s)" in line
    assert machine.short_key(fp) != machine.short_key(dict(fp, cpu=dict(fp["cpu"], isa=["avx2", "avx512f"])))


def test_short_key_without_a_fingerprint_matches_the_fingerprints():
    assert machine.short_key() == machine.short_key(machine.fingerprint())
