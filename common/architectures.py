"""Convolutional architectures of the papers: LeNet-5, ResNet-18 and VGG-11.

Each takes ``input_shape`` ``(C, H, W)`` (a JSON list in a manifest's ``arch_args``) and
``num_classes``, and reshapes its input to ``(B, C, H, W)`` first, so flat wire tensors of
``C*H*W`` values work as well as images.  `common.models` registers them under
``lenet5``, ``resnet18`` and ``vgg11``; the fully connected ``mlp`` lives there too.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(n) for n in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), got {list(shape)}")
    return shape[0], shape[1], shape[2]


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, for any image large enough.

    conv5x5(pad 2) -> pool -> conv5x5 -> pool -> fc -> fc -> fc.  ``channels`` and
    ``hidden`` default to the classic (6, 16) and (120, 84).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        channels: Sequence[int] = (6, 16),
        hidden: Sequence[int] = (120, 84),
    ) -> None:
        super().__init__()
        self.input_shape = _image_shape(input_shape)
        c, h, w = self.input_shape
        c1, c2 = channels
        h2, w2 = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        if h2 < 1 or w2 < 1:
            raise ValueError(f"LeNet-5 needs images of at least 12x12, got {h}x{w}")
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        h1, h_2 = hidden
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * h2 * w2, h1),
            nn.ReLU(),
            nn.Linear(h1, h_2),
            nn.ReLU(),
            nn.Linear(h_2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_shape)  # (B, C, H, W)
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016).  ``stem="cifar"``: one 3x3 convolution, no pooling (the
    CIFAR variant the papers use, also for 1-channel 28x28 inputs); ``stem="imagenet"``: 7x7
    stride-2 convolution and max pooling, for large images.  Global average pooling makes
    any input size work."""

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        stem: str = "cifar",
        width: int = 64,
    ) -> None:
        super().__init__()
        self.input_shape = _image_shape(input_shape)
        c = self.input_shape[0]
        if stem == "cifar":
            first: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1, bias=False)]
        elif stem == "imagenet":
            first = [nn.Conv2d(c, width, 7, stride=2, padding=3, bias=False)]
        else:
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        layers = [*first, nn.BatchNorm2d(width), nn.ReLU()]
        if stem == "imagenet":
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        c_in = width
        for stage in range(4):
            c_out = width * 2**stage
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(c_in, c_out, stride))
                c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_shape)  # (B, C, H, W)
        return self.fc(self.features(x))  # type: ignore[no-any-return]


VGG11_LAYERS = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


class VGG11(nn.Module):
    """VGG-11 (Simonyan and Zisserman 2015, configuration A) with batch norm.

    Pooling rounds up (``ceil_mode``) and a global average pool precedes one linear layer
    (the CIFAR variant), so 28x28 and 32x32 inputs, or larger, all work.
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (3, 32, 32),
        num_classes: int = 10,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.input_shape = _image_shape(input_shape)
        layers: list[nn.Module] = []
        c_in = self.input_shape[0]
        for item in VGG11_LAYERS:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            c_out = width * int(item)
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, *self.input_shape)  # (B, C, H, W)
        return self.fc(self.features(x))  # type: ignore[no-any-return]


# -- learned codes (paradigm 1 of "Learning-Based Coded Computation") ----------------------


class MLPEncoder(nn.Module):
    """Maps k inputs ``(B, k, *sample)`` to r parity inputs ``(B, r, *sample)``.

    Fully connected: ``k*D -> k*D -> r*D`` with ``D`` the flattened sample size (the
    papers' MLP encoder, hidden width ``hidden * k * D``).  Outputs are scaled by
    ``output_std`` and shifted by ``output_mean``: parities on the wire scale of inputs.
    """

    def __init__(
        self,
        k: int,
        r: int,
        sample_shape: Sequence[int],
        hidden: int = 1,
        output_mean: float = 0.0,
        output_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.k, self.r, self.sample_shape = k, r, tuple(int(n) for n in sample_shape)
        self.output_mean, self.output_std = output_mean, output_std
        d = 1
        for n in self.sample_shape:
            d *= n
        width = hidden * k * d
        self.net = nn.Sequential(nn.Linear(k * d, width), nn.ReLU(), nn.Linear(width, r * d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x.reshape(len(x), -1))  # (B, r*D)
        out = out * self.output_std + self.output_mean
        return out.view(len(x), self.r, *self.sample_shape)


class DilatedBlock(nn.Module):
    """A pre-activation residual 3x3 convolution: ``h + conv(relu(h))``, width kept."""

    def __init__(self, width: int, dilation: int, gain: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation)
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        with torch.no_grad():
            self.conv.weight.mul_(gain)
        nn.init.zeros_(self.conv.get_parameter("bias"))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv(torch.relu(h))  # type: ignore[no-any-return]


class ConvEncoder(nn.Module):
    """Maps k images ``(B, k, C, H, W)`` to r parity images ``(B, r, C, H, W)``.

    The k images are stacked as channels and pass through 3x3 convolutions with
    ``dilations`` 1, 1, 2, 4, 8, 1 (growing the receptive field without pooling), then a
    1x1 convolution to ``r*C`` channels: the papers' dilated-convolution encoder, with
    ``channels_per_input * k`` channels.  Outputs are scaled and shifted as in `MLPEncoder`.

    A plain stack of six ReLU convolutions with PyTorch's default initialisation shrinks
    its signal about 2.5 times a layer: untrained, it gave every group the same parity
    (spread across inputs 1e-3 of theirs), the base model the same answer, and training
    stayed at chance (bench/RESULTS.md, "Every code ... completed").  So the convolutions
    after the first are residual (``h + conv(relu(h))``, He initialisation scaled by
    ``1/sqrt(blocks)`` so the signal grows at most e-fold in variance), the 1x1 output
    convolution starts at zero, and a 1x1 shortcut from the inputs starts as their mean:
    untrained, the encoder is the mean code, and training learns what to add to it.
    """

    def __init__(
        self,
        k: int,
        r: int,
        input_shape: Sequence[int],
        channels_per_input: int = 20,
        output_mean: float = 0.0,
        output_std: float = 1.0,
        dilations: Sequence[int] = (1, 1, 2, 4, 8, 1),
    ) -> None:
        super().__init__()
        self.k, self.r = k, r
        self.output_mean, self.output_std = output_mean, output_std
        self.input_shape = _image_shape(input_shape)
        c = self.input_shape[0]
        width = channels_per_input * k
        first, *rest = (int(d) for d in dilations)
        self.stem = nn.Conv2d(k * c, width, 3, padding=first, dilation=first)
        gain = 1.0 / max(len(rest), 1) ** 0.5
        self.blocks = nn.Sequential(*(DilatedBlock(width, d, gain) for d in rest))
        self.head = nn.Conv2d(width, r * c, 1)
        for param in self.head.parameters():
            nn.init.zeros_(param)
        self.shortcut = nn.Conv2d(k * c, r * c, 1, bias=False)
        with torch.no_grad():  # parity channel i of each image: the mean of the k inputs'
            mean = torch.eye(c).repeat(r, k) / k  # (r*C, k*C)
            self.shortcut.weight.copy_(mean[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.input_shape
        stacked = x.reshape(len(x), self.k * c, h, w)  # (B, k*C, H, W)
        # channels-last convolutions run about 1.8x faster on the CPU (one thread, k=2)
        stacked = stacked.contiguous(memory_format=torch.channels_last)
        features = self.blocks(self.stem(stacked))  # (B, width, H, W)
        # (B, r*C, H, W)
        out: torch.Tensor = self.head(torch.relu(features)) + self.shortcut(stacked)
        out = out * self.output_std + self.output_mean
        return out.reshape(len(x), self.r, c, h, w)


class MLPDecoder(nn.Module):
    """Maps the k + r outputs ``(B, k+r, O)`` (erased ones zero) to k outputs ``(B, k, O)``.

    Three fully connected layers, ``(k+r)*O -> W -> W -> k*O`` with ``W = hidden * k * O``
    (``hidden=1`` is the papers' width).  ``output_scale`` (the spread of the base
    model's outputs) divides the inputs and multiplies the answer: the network works at
    unit scale whatever the size of the logits.
    """

    def __init__(
        self, k: int, r: int, out_features: int, hidden: int = 1, output_scale: float = 1.0
    ) -> None:
        super().__init__()
        self.k, self.out_features, self.output_scale = k, out_features, output_scale
        width = hidden * k * out_features
        self.net = nn.Sequential(
            nn.Linear((k + r) * out_features, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Linear(width, k * out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x.reshape(len(x), -1) / self.output_scale)  # (B, k*O)
        return (out * self.output_scale).view(len(x), self.k, self.out_features)
