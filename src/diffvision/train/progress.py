"""The progress bar of a training loop that reports ``progress(step, loss)`` after each step
(the noise classifier's, the feature network's)."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def loss_bar(total: int, what: str, shown: bool = True):
    """A tqdm bar on stderr for ``total`` training steps named ``what``, with a step's loss
    every 100 steps; yields the ``progress(step, loss)`` callback that feeds it. ``shown``
    False: none. The bar is made at the first step reported, from there (a resumed training's
    starts part-way): where no training runs (a cached network loaded instead, say) nothing is
    shown."""
    from tqdm.auto import tqdm

    bar = None

    def progress(step: int, loss: float) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(
                total=total,
                initial=step - 1,
                desc=what,
                unit="step",
                dynamic_ncols=True,
                disable=not shown,
            )
        bar.update(1)
        if step % 100 == 0 or step == total:  # a step's loss, now and then
            bar.set_postfix(loss=f"{loss:.4f}")

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()
