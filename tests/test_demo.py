"""The demo pipeline end to end with very few steps (the real quality numbers come from
bench/demo_quality.py, which trains the full demo configuration)."""

from diffvision.demo import run_demo


def test_demo_writes_report(tmp_path):
    report = run_demo(tmp_path, steps=3, progress=False, n_per_class=4)
    text = report.read_text()
    assert report.name == "report.html" and "data:image/png;base64," in text
    assert "held-out accuracy" in text and "chi-square" in text
    for name in ("samples_conditional.png", "samples_unconditional.png", "loss.png", "demo.json"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "model" / "ema.safetensors").is_file()
