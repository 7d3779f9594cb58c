"""Run under ``torchrun`` by test_train.py (2 CPU processes, gloo) and test_cuda.py (nccl):
``ddp_worker.py OUT [DEVICE]`` trains a few steps and writes a digest of each rank's final weights
to OUT/rank{r}.json."""

import hashlib
import json
import sys
from pathlib import Path

import torch

from diffvision.data import digits
from diffvision.train import TrainConfig, Trainer

out = Path(sys.argv[1])
device = sys.argv[2] if len(sys.argv) > 2 else "cpu"
torch.set_num_threads(1)
cfg = TrainConfig(preset="tiny", steps=3, batch=16, checkpoint_every=3, log_every=1)
trainer = Trainer(cfg, digits(), out, device=device)
trainer.fit(progress=False)
digest = hashlib.sha256()
for name, tensor in sorted(trainer.model.net.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.detach().cpu().numpy().tobytes())
(out / f"rank{trainer.dist.rank}.json").write_text(
    json.dumps({"world": trainer.dist.world, "sha256": digest.hexdigest()})
)
trainer.close()
