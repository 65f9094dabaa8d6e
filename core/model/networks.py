"""Backbones and the DisCoM-KD network (per-modality branches plus shared training heads)."""

from __future__ import annotations

import torch
from torch import nn


class _GradientReversalFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.factor * grad_output, None


def gradient_reversal(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by -factor backward (Ganin & Lempitsky, 2015)."""
    return _GradientReversalFn.apply(x, float(factor))


# The compact CNN's two architectures, as bundles and run records name them. New runs train the
# second; the first stays for models and runs saved before it (issue 18).
COMPACT_BN_FIRST = "compact"
COMPACT_POOL_FIRST = "compact-pool-first"
ARCHITECTURES = (COMPACT_BN_FIRST, COMPACT_POOL_FIRST, "resnet18", "cnn1d")


class CompactCNN(nn.Module):
    """Small 2-D CNN that trains quickly on a CPU; works for any input size and channel count.

    Inputs of 48 px and more (spectrograms, satellite patches) start with a stride-2 convolution,
    which makes the network about five times cheaper at little cost in accuracy.

    Each block is convolution, batch norm, max-pooling, ReLU; with ``pool_first`` (what new runs
    train on images of 16 px and more) the pooling comes before the batch norm, so that the batch
    norm and its backward run on a quarter of the elements: a step is about 1.2 times faster (issue 18).
    """

    def __init__(self, in_channels: int, out_dim: int, width: int = 32, stem_stride: int = 1,
                 pool_first: bool = False) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            # ReLU after the pooling: max and ReLU commute, so in the batch-norm-first order the function
            # and its gradients are those of the textbook conv-BN-ReLU-pool to the bit, on a quarter of
            # the elements. Neither layer has weights, so models saved before load unchanged.
            if pool_first:
                return nn.Sequential(conv, nn.MaxPool2d(2, ceil_mode=True), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
            return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.MaxPool2d(2, ceil_mode=True), nn.ReLU(inplace=True))

        self.features = nn.Sequential(
            block(in_channels, width, stem_stride), block(width, 2 * width), block(2 * width, 4 * width),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class CNN1D(nn.Module):
    """1-D CNN for multichannel signals (C x L)."""

    def __init__(self, in_channels: int, out_dim: int, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv1d(cin, cout, 7, padding=3, bias=False),
                nn.BatchNorm1d(cout),
                nn.MaxPool1d(2, ceil_mode=True),  # before the ReLU, as in CompactCNN
                nn.ReLU(inplace=True),
            )

        self.features = nn.Sequential(
            block(in_channels, width), block(width, 2 * width), block(2 * width, 4 * width),
            nn.AdaptiveAvgPool1d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 from scratch (the paper's backbone), first convolution adapted to the channel count.

    Small inputs (under 64 px) get a 3x3 stride-1 stem without max-pooling, as for CIFAR, so that
    28x28 digits are not reduced to 1x1 before the last stage.
    """

    def __init__(self, in_channels: int, out_dim: int, small_input: bool = False) -> None:
        super().__init__()
        if small_input:
            stem = [nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
        else:
            stem = [
                nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
                nn.MaxPool2d(3, 2, 1),
            ]
        layers, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.features = nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Identity() if out_dim == 512 else nn.Linear(512, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# The smallest image side for which new runs train the compact CNN pool-first: the last block's batch
# norm still sees a 2x2 map. On 7x7 images (the paired digits' weak sensor) pool-first cost 1.1 F1
# points on seeds 1080-1089, where the time it saves is negligible anyway (issue 18).
POOL_FIRST_MIN_SIDE = 16


def resolve_backbone(requested: str, kind: str, device_type: str, input_shape: tuple[int, ...]) -> str:
    """The architecture a new run trains: 'auto' means the compact CNN on a CPU and ResNet-18 on a GPU;
    the compact CNN is pool-first on images of 16 px and more; signals always use the 1-D CNN."""
    if kind == "signal":
        return "cnn1d"
    if requested in ("auto", "cnn1d"):
        requested = "resnet18" if device_type in ("cuda", "mps") else "compact"
    if requested == COMPACT_BN_FIRST and min(input_shape[1:]) >= POOL_FIRST_MIN_SIDE:
        return COMPACT_POOL_FIRST
    return requested


def build_backbone(name: str, input_shape: tuple[int, ...], out_dim: int) -> nn.Module:
    channels = input_shape[0]
    if name == "cnn1d":
        return CNN1D(channels, out_dim)
    if name in (COMPACT_BN_FIRST, COMPACT_POOL_FIRST):
        return CompactCNN(channels, out_dim, stem_stride=2 if min(input_shape[1:]) >= 48 else 1,
                          pool_first=name == COMPACT_POOL_FIRST)
    if name == "resnet18":
        return ResNet18(channels, out_dim, small_input=min(input_shape[1:]) < 64)
    raise ValueError(f"unknown backbone {name}")


class ModalityModuleDict(nn.ModuleDict):
    """A ModuleDict keyed by modality names as the user typed them.

    PyTorch refuses module names with a dot ("rgb.v2", a common folder name) or that shadow an
    attribute ("training"); such names are stored escaped. Other names are stored unchanged, so
    checkpoints of earlier runs keep loading.
    """

    def __init__(self, modules: dict[str, nn.Module] | None = None) -> None:
        self._names: dict[str, str] = {}  # stored key -> modality name
        super().__init__(modules)

    def _key(self, name: str) -> str:
        plain = name and "." not in name and not name.startswith("%") and (name in self._modules or not hasattr(self, name))
        return name if plain else "%" + name.replace("%", "%25").replace(".", "%2E")

    def __getitem__(self, name: str) -> nn.Module:
        return super().__getitem__(self._key(name))

    def __setitem__(self, name: str, module: nn.Module) -> None:
        key = self._key(name)
        self._names[key] = name
        super().__setitem__(key, module)

    def __delitem__(self, name: str) -> None:
        key = self._key(name)
        self._names.pop(key, None)
        super().__delitem__(key)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(self._key(name))

    def __iter__(self):
        return (self._names.get(k, k) for k in self._modules)

    def keys(self):
        return list(iter(self))

    def items(self):
        return [(self._names.get(k, k), m) for k, m in self._modules.items()]


class ModalityBranch(nn.Module):
    """Everything one modality needs at prediction time: both encoders and its task classifier."""

    def __init__(self, backbone: str, input_shape: tuple[int, ...], embed_dim: int, n_classes: int) -> None:
        super().__init__()
        feature_dim = 2 * embed_dim
        self.invariant_encoder = build_backbone(backbone, input_shape, feature_dim)
        self.invariant_projection = nn.Sequential(
            nn.Linear(feature_dim, embed_dim), nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True)
        )
        self.specific_encoder = build_backbone(backbone, input_shape, feature_dim)
        self.classifier = nn.Linear(2 * embed_dim, n_classes)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z_inv = self.invariant_projection(self.invariant_encoder(x))
        specific = self.specific_encoder(x)
        z_inf, z_irr = specific[:, : self.embed_dim], specific[:, self.embed_dim :]
        logits = self.classifier(torch.cat([z_inv, z_inf], dim=1))
        return {"z_inv": z_inv, "z_inf": z_inf, "z_irr": z_irr, "logits": logits}


class DisCoMKD(nn.Module):
    """One branch per modality plus the heads used only during training (DESIGN.md section 1)."""

    def __init__(
        self,
        modality_names: list[str],
        input_shapes: dict[str, tuple[int, ...]],
        backbones: dict[str, str],
        embed_dim: int,
        n_classes: int,
    ) -> None:
        super().__init__()
        self.modality_names = list(modality_names)
        n_modalities = len(modality_names)
        self.branches = ModalityModuleDict(
            {m: ModalityBranch(backbones[m], input_shapes[m], embed_dim, n_classes) for m in modality_names}
        )
        self.aux_classifier = nn.Linear(embed_dim, n_classes)  # shared by all modalities
        self.discriminator = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.ReLU(inplace=True), nn.Linear(embed_dim, n_modalities)
        )
        self.informative_modality_head = nn.Linear(embed_dim, n_modalities)
        self.irrelevant_modality_head = nn.Linear(embed_dim, n_modalities)

    def forward(self, inputs: dict[str, torch.Tensor], grl_factor: float = 1.0) -> dict[str, dict[str, torch.Tensor]]:
        """Per modality: embeddings, task logits and the logits of every training head."""
        outputs = {}
        for name, x in inputs.items():
            out = self.branches[name](x)
            out["aux_inv"] = self.aux_classifier(out["z_inv"])
            out["aux_inf"] = self.aux_classifier(out["z_inf"])
            out["disc"] = self.discriminator(gradient_reversal(out["z_inv"], grl_factor))
            out["mod_inf"] = self.informative_modality_head(out["z_inf"])
            out["mod_irr"] = self.irrelevant_modality_head(out["z_irr"])
            outputs[name] = out
        return outputs
