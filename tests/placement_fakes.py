"""On CPU a node never lands elsewhere than requested: tests move the LSTM nodes at the session factory's seam
(runtimes.session.profile_placements), after the real profile has been read."""
import dataclasses

ELSEWHERE = "CUDAExecutionProvider"


def move_lstm_nodes(monkeypatch, provider: str = ELSEWHERE) -> None:
    from lstm_onnx.runtimes import session

    real = session.profile_placements

    def moved(sess):
        return [dataclasses.replace(p, provider=provider) if p.op_type == "LSTM" else p for p in real(sess)]
    monkeypatch.setattr(session, "profile_placements", moved)
