"""The README's library example runs as written (with the tiny test model for its model folder),
so the README stays true to the API."""

from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_library_example_runs(tiny_digits_model):
    text = README.read_text()
    section = text[text.index("## Use it as a library") :]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert '"runs/digits/model"' in code
    scope = {}
    exec(code.replace('"runs/digits/model"', repr(str(tiny_digits_model))), scope)
    assert scope["images"].shape == (16, 1, 8, 8) and scope["x"].shape == (1000, 2)
    assert scope["ll"].log_prob.shape == (10,) and scope["ll"].log_prob.isfinite().all()
