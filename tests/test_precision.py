"""How training steps run: reduced precision only where the hardware computes it natively, the same
rule for the trainer and the baselines, and said in the run's record and first line."""

from __future__ import annotations

import torch

from support import tiny_config
from discomkd.storage import runs
from discomkd.training import precision
from discomkd.training.events import RunStarted
from discomkd.training.trainer import train


def test_cpu_autocasts_to_bfloat16_only_where_the_cpu_computes_it(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    assert precision.autocast_dtype(cpu, mixed_precision=True) == torch.bfloat16
    assert precision.autocast_dtype(cpu, mixed_precision=False) is None  # the user switched it off
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: False)
    assert precision.autocast_dtype(cpu, mixed_precision=True) is None  # emulated bfloat16 is slower


def test_native_bfloat16_is_read_from_the_cpu_flags(monkeypatch, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    real_open = open

    def fake_open(path, *args, **kwargs):
        return real_open(cpuinfo if path == "/proc/cpuinfo" else path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)
    read_flags = precision.cpu_has_native_bfloat16.__wrapped__  # the answer is cached once read
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not read_flags()
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert read_flags()
    cpuinfo.unlink()  # not Linux, or no access: float32
    assert not read_flags()


def test_the_run_says_how_its_steps_ran(tiny_demo, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    started = []
    result = train(tiny_config(tiny_demo, epochs=1), run_dir=tmp_path / "bf16",
                   on_event=lambda e: started.append(e) if isinstance(e, RunStarted) else None)
    assert result.status == "finished"
    assert runs.read_run_record(result.run_dir)["mixed_precision"] == "bfloat16"
    assert started[0].device == "cpu, bfloat16 mixed precision"
    assert started[0].summary().startswith("Training on cpu, bfloat16 mixed precision (backbones:")

    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: False)
    result = train(tiny_config(tiny_demo, epochs=1), run_dir=tmp_path / "fp32")
    assert runs.read_run_record(result.run_dir)["mixed_precision"] is None
