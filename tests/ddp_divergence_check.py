"""Run by tests/test_distributed.py under torchrun (2 gloo processes): the loss turns NaN on rank 1 only
(as one process's float16 overflow would) at the first step of epoch 2. Every rank must stop at that
step with the diverged message, and rank 0 record it, rather than rank 1 failing alone while rank 0
waits in DDP's all-reduce until torchrun ends it.

Arguments: the image folder, the audio folder, the run folder.
"""

import os
import sys

import torch

import discomkd.training.loop as loop
from discomkd.cli import main

real_train_one_epoch, real_weighted_total = loop.train_one_epoch, loop.weighted_total
where = {"epoch": 0, "step": 0}


def train_one_epoch(run, session, epoch, clock):
    where["epoch"], where["step"] = epoch, 0
    return real_train_one_epoch(run, session, epoch, clock)


def weighted_total(*args, **kwargs):
    total = real_weighted_total(*args, **kwargs)
    where["step"] += 1
    if os.environ["RANK"] == "1" and where["epoch"] == 2 and where["step"] == 1:
        return total * float("nan")
    return total


loop.train_one_epoch, loop.weighted_total = train_one_epoch, weighted_total
torch.set_num_threads(1)
image, audio, run_dir = sys.argv[1:4]
sys.exit(main(["train", "--modality", f"image={image}", "--modality", f"audio={audio}", "--out", run_dir,
               "--epochs", "3", "--embed-dim", "8", "--batch-size", "16", "--device", "cpu"]))
