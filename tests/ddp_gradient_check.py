"""Run by tests/test_distributed.py under torchrun (2 gloo processes): checks, with the engine's own
DistributedContext and the real DisCoM-KD network and loss, that

- the ranks' shards of a shared order are disjoint and cover it;
- the gradient DDP leaves on every rank is the mean of the gradients each rank computes alone on its
  shard (what DistributedDataParallel promises, with find_unused_parameters and the GRL);
- after optimiser steps the parameters are identical on every rank;
- a stop flag set on rank 0 only is seen by every rank.

Rank 0 prints "DDP CHECK PASSED ..." and every rank exits 0, or a rank raises.
"""

import copy

import torch
import torch.distributed as dist

from discomkd.config import LossWeights
from discomkd.model.losses import discomkd_loss_terms, weighted_total
from discomkd.model.networks import DisCoMKD
from discomkd.training.distributed import from_environment

torch.set_num_threads(1)
ctx = from_environment(torch.device("cpu"))
assert ctx.enabled and ctx.world_size == 2, ctx

names = ["image", "signal"]
torch.manual_seed(0)  # same data and initial weights on every rank
model = DisCoMKD(names, {"image": (1, 28, 28), "signal": (2, 100)}, {"image": "compact", "signal": "cnn1d"}, 8, 3)
x = {"image": torch.randn(12, 1, 28, 28), "signal": torch.randn(12, 2, 100)}
y = {n: torch.randint(0, 3, (12,)) for n in names}


def gathered(t: torch.Tensor) -> list[torch.Tensor]:
    out = [torch.empty_like(t) for _ in range(ctx.world_size)]
    dist.all_gather(out, t.contiguous())
    return out


def loss_of(net, idx):
    outputs = net({n: x[n][idx] for n in names}, grl_factor=0.7)
    return weighted_total(discomkd_loss_terms(outputs, {n: y[n][idx] for n in names}, names, "abs"), LossWeights())


order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
shard = ctx.shard(order)
shards = gathered(shard)
assert sorted(torch.cat(shards).tolist()) == list(range(12)), shards
assert not set(shards[0].tolist()) & set(shards[1].tolist())

alone = copy.deepcopy(model)
loss_of(alone, shard).backward()
local = torch.cat([p.grad.reshape(-1) for p in alone.parameters()])
expected = torch.stack(gathered(local)).mean(0)

ddp = ctx.wrap(model, batch_size=12)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
loss_of(ddp, shard).backward()
got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
grad_diff = float((got - expected).abs().max())
assert grad_diff < 1e-5, f"DDP gradient is not the mean of the ranks' gradients (max diff {grad_diff})"
assert float(local.abs().max()) > 0 and float((local - expected).abs().max()) > 1e-4  # the shards differ

for _ in range(3):
    optimizer.step()
    optimizer.zero_grad()
    loss_of(ddp, shard).backward()
params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
rank_params = gathered(params)
param_diff = float((rank_params[0] - rank_params[1]).abs().max())
assert param_diff == 0.0, f"parameters differ across ranks by {param_diff}"

assert ctx.any_rank(ctx.rank == 0) is True  # a stop requested on rank 0 only
assert ctx.any_rank(False) is False
if ctx.is_writer:
    print(f"DDP CHECK PASSED: gradient max diff {grad_diff:.1e}, parameter max diff across ranks {param_diff}")
del ddp, optimizer, model, alone  # DDP must go before its process group, or the process may abort at exit
ctx.close()
