"""The demo pipeline end to end with very few steps (the real quality numbers come from
bench/demo_quality.py, which trains the full demo configuration)."""

import json

import pytest
import torch

from diffvision.data import digits
from diffvision.demo import run_demo


def test_demo_writes_report(tmp_path, capsys):
    # Leftovers of an earlier demo in the folder (its demo.json marks it): replaced, not mixed in.
    (tmp_path / "demo.json").write_text("{}")
    (tmp_path / "checkpoints" / "step_00000999").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_00000999" / "state.pt").write_bytes(b"")
    (tmp_path / "metrics.jsonl").write_text('{"step": 2, "loss": 99.0}\n')
    report = run_demo(tmp_path, steps=3, n_per_class=4, classifier_steps=20)
    bars = capsys.readouterr().err  # training, the noise classifier, the checks' sampling
    assert all(f"{what}:" in bars for what in ("noise classifier", "sample and check")), bars
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_00000003"]
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert log and all(r["loss"] != 99.0 for r in log)
    text = report.read_text()
    assert report.name == "report.html" and "data:image/png;base64," in text
    assert "held-out accuracy" in text and "chi-square" in text
    assert "Unconditional samples (class-posterior mixture)" in text
    assert "branches per sample and step" in text
    assert (tmp_path / "model" / "classifier.safetensors").is_file()
    for name in ("samples_conditional.png", "samples_unconditional.png", "loss.png", "demo.json"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "model" / "ema.safetensors").is_file()


def test_an_interrupted_demo_continues_where_it_stopped(tmp_path, monkeypatch, capsys):
    """Interrupted while training, the demo keeps its checkpoint; run again with the same
    settings it continues from there (it trained afresh, losing what was done), says so, and
    ends with the weights of a demo never interrupted. With other settings it starts afresh."""
    from safetensors.torch import load_file

    from diffvision.train import Trainer

    quick = dict(steps=4, progress=False, n_per_class=4, classifier_steps=0)
    run_demo(tmp_path / "whole", **quick)
    step = Trainer.train_step

    def stopped_after_2(self):
        if self.step == 2:
            raise KeyboardInterrupt("Ctrl-C")
        return step(self)

    monkeypatch.setattr(Trainer, "train_step", stopped_after_2)
    with pytest.raises(KeyboardInterrupt):
        run_demo(tmp_path / "parts", **quick)
    monkeypatch.undo()
    capsys.readouterr()
    report = run_demo(tmp_path / "parts", **quick)
    assert f"continuing the interrupted demo in {tmp_path / 'parts'} from step 2" in (
        capsys.readouterr().out
    )
    assert "4 steps in" in report.read_text() and "(from step 2 on, after an interrupt" in (
        report.read_text()
    )
    summary = json.loads((tmp_path / "parts" / "demo.json").read_text())
    assert summary["finished"] is True and summary["resumed_at_step"] == 2
    for name in ("model.safetensors", "ema.safetensors"):
        whole, parts = (load_file(tmp_path / run / "model" / name) for run in ("whole", "parts"))
        assert all(torch.equal(whole[k], parts[k]) for k in whole)
    run_demo(tmp_path / "parts", **{**quick, "steps": 3})  # finished: replaced, afresh
    assert "continuing" not in capsys.readouterr().out
    assert json.loads((tmp_path / "parts" / "demo.json").read_text())["resumed_at_step"] is None


def test_demo_refuses_a_folder_with_another_run(tmp_path):
    from diffvision.train import TrainConfig, train

    train(TrainConfig(preset="tiny", steps=2, batch=8), digits(), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"holds a run .*the demo trains afresh"):
        run_demo(tmp_path, steps=3, progress=False)
    assert not (tmp_path / "demo.json").exists()


def test_balance_check_passes_for_the_exact_denoiser_of_digits():
    """The unconditional balance check is sound: sampling the exact (empirical) denoiser of the
    training digits the way the demo samples its model gives uniform class counts."""
    import torch

    from diffvision.analytic import EmpiricalDenoiser
    from diffvision.data import digits
    from diffvision.demo import unconditional_counts

    data = digits()
    exact = EmpiricalDenoiser(data.batch(torch.arange(len(data)))[0])

    def as_model(x, sigma, cond=None):  # the empirical denoiser ignores the (null) class
        return exact(x, sigma)

    counts, p = unconditional_counts(as_model, seed=100)
    assert sum(counts) == 1000 and min(counts) > 50
    assert p > 0.05, counts


def test_balance_check_passes_for_the_exact_class_mixture_of_digits():
    """The demo's unconditional path (the class-posterior mixture, pruned as the demo prunes it)
    with exact parts: the digits' ideal class-conditional denoisers mixed by their exact class
    posterior give uniform class counts."""
    import torch

    from diffvision.analytic import EmpiricalDenoiser
    from diffvision.data import digits
    from diffvision.demo import unconditional_counts
    from diffvision.denoiser import ClassMixture

    images, labels = digits().batch(torch.arange(1797))
    exact = EmpiricalDenoiser(images, labels, null_cond=10)
    mixture = ClassMixture(exact, exact.class_log_posterior)
    counts, p = unconditional_counts(mixture, seed=100, null=None)
    assert sum(counts) == 1000 and min(counts) > 50
    assert p > 0.05, counts
    assert mixture.evaluations < 10 * mixture.rows  # pruning skipped some class branches
