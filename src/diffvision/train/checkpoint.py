"""Training checkpoints: one folder per step, written atomically, the last K kept.

``checkpoints/step_00001000/`` holds ``config.json``, ``model.safetensors``, ``ema.safetensors``
(a loadable model folder) and ``state.pt`` (optimiser state, step, RNG states), which is read with
``torch.load(weights_only=True)``: plain tensors and containers only, no code."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from ..io.atomic import write_whole
from ..io.model_folder import save_model_folder

PREFIX = "step_"


def rng_state() -> dict:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),  # noqa: NPY002
        "python": repr(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    # The legacy global NumPy generator is what third-party code may draw from.
    np_state = np.random.get_state()  # noqa: NPY002
    np.random.set_state((np_state[0], state["numpy"].numpy().astype(np.uint32), *np_state[2:]))  # noqa: NPY002
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Path, step: int, config: dict, model, ema, optimizer, keep: int) -> Path:
    """Write ``root/step_XXXXXXXX`` atomically and delete all but the newest ``keep``."""
    folder = save_model_folder(root / f"{PREFIX}{step:08d}", config, model, ema)
    state = {"step": step, "optimizer": optimizer.state_dict(), "rng": rng_state()}
    write_whole(folder / "state.pt", lambda tmp: torch.save(state, tmp))
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints (with state.pt), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.glob(f"{PREFIX}*") if (p / "state.pt").is_file()]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(folder: Path) -> int:
    """The step of the checkpoint ``folder`` (``step_00000500``: 500), from its name."""
    return int(folder.name[len(PREFIX) :])


def check_fresh(out: Path, hint: str) -> None:
    """Refuse to start a new run in ``out`` where one is already: its checkpoints would be
    pruned as older than the old run's, a later resume would pick the old run's newest, and its
    model folder would be overwritten. ``hint``: what to do instead (how to resume it)."""
    found = list_checkpoints(out / "checkpoints")
    if found:
        what = f"checkpoints up to step {checkpoint_step(found[-1])}"
    elif (out / "model" / "config.json").is_file():
        what = "a trained model"
    else:
        return
    raise ValueError(f"{out} already holds a run ({what}): {hint}")


def load_state(folder: Path) -> dict:
    return torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
