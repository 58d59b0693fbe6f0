"""On CPU a node never lands elsewhere than requested: tests move the LSTM nodes at the session factory's seam
(runtimes.session.profile_placements), after the real profile has been read."""
import dataclasses
import os

ELSEWHERE = "CUDAExecutionProvider"


def move_lstm_nodes(monkeypatch, provider: str = ELSEWHERE) -> None:
    from lstm_onnx.runtimes import session

    real = session.profile_placements

    def moved(sess):
        return [dataclasses.replace(p, provider=provider) if p.op_type == "LSTM" else p for p in real(sess)]
    monkeypatch.setattr(session, "profile_placements", moved)


def profiled_by_hand(path, feeds: dict) -> list:
    """Node placements from a CPU session profiled straight on onnxruntime: the factory's independent check."""
    import onnxruntime as ort

    from lstm_onnx.runtimes.placement import parse_profile

    so = ort.SessionOptions()
    so.enable_profiling = True
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    sess.run(None, feeds)
    profile = sess.end_profiling()
    try:
        return parse_profile(profile)
    finally:
        os.remove(profile)
