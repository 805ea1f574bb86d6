"""Every registered architecture: forward shapes for the input sizes and classes it serves."""

from __future__ import annotations

import pytest
import torch

from common.models import ARCHITECTURES, build

CASES = [
    ("mlp", {"in_features": 784, "num_classes": 10}, (3, 1, 28, 28), (3, 10)),
    ("mlp", {"in_features": 64, "num_classes": 10, "hidden": []}, (3, 64), (3, 10)),
    ("lenet5", {"input_shape": [1, 28, 28]}, (3, 1, 28, 28), (3, 10)),
    ("lenet5", {"input_shape": [1, 28, 28]}, (3, 784), (3, 10)),  # flat wire tensors
    ("lenet5", {"input_shape": [3, 32, 32], "num_classes": 100}, (2, 3, 32, 32), (2, 100)),
    ("lenet5", {"input_shape": [1, 12, 12], "channels": [4, 8]}, (2, 1, 12, 12), (2, 10)),
    ("resnet18", {"input_shape": [3, 32, 32]}, (2, 3, 32, 32), (2, 10)),
    ("resnet18", {"input_shape": [1, 28, 28], "width": 8}, (2, 1, 28, 28), (2, 10)),
    ("resnet18", {"input_shape": [3, 64, 64], "stem": "imagenet", "width": 8}, (2, 3, 64, 64),
     (2, 10)),
    ("vgg11", {"input_shape": [3, 32, 32], "num_classes": 100, "width": 8}, (2, 3, 32, 32),
     (2, 100)),
    ("vgg11", {"input_shape": [1, 28, 28], "width": 8}, (2, 1, 28, 28), (2, 10)),
    ("vgg11", {"input_shape": [1, 8, 8], "width": 8}, (2, 64), (2, 10)),
    ("mlp-encoder", {"k": 3, "r": 2, "sample_shape": [1, 6, 6]}, (2, 3, 1, 6, 6), (2, 2, 1, 6, 6)),
    ("conv-encoder", {"k": 2, "r": 1, "input_shape": [3, 8, 8], "channels_per_input": 4},
     (2, 2, 3, 8, 8), (2, 1, 3, 8, 8)),
    ("mlp-decoder", {"k": 2, "r": 1, "out_features": 10}, (4, 3, 10), (4, 2, 10)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args", "shape", "expected"), CASES)
def test_forward_shape(name, args, shape, expected):
    torch.manual_seed(0)
    net = build(name, **args).eval()
    with torch.no_grad():
        assert tuple(net(torch.randn(*shape)).shape) == expected


def test_every_architecture_is_covered():
    assert {case[0] for case in CASES} == set(ARCHITECTURES)


@pytest.mark.parametrize(
    ("name", "args", "message"),
    [
        ("lenet5", {"input_shape": [1, 8, 8]}, "at least 12x12"),
        ("lenet5", {"input_shape": [28, 28]}, r"\(channels, height, width\)"),
        ("resnet18", {"stem": "tiny"}, "stem must be"),
    ],
)
def test_bad_arguments(name, args, message):
    with pytest.raises(ValueError, match=message):
        build(name, **args)


def test_encoder_output_scale():
    enc = build("mlp-encoder", k=2, r=1, sample_shape=[4], output_mean=100.0, output_std=0.0)
    assert torch.equal(enc(torch.randn(3, 2, 4)), torch.full((3, 1, 4), 100.0))


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("mlp-encoder", {"k": 2, "r": 1, "sample_shape": [1, 12, 12]}),
        ("conv-encoder", {"k": 2, "r": 1, "input_shape": [1, 12, 12]}),
        ("conv-encoder", {"k": 3, "r": 2, "input_shape": [3, 12, 12], "channels_per_input": 4}),
    ],
)
def test_untrained_encoder_parities_follow_the_inputs(name, args):
    """Untrained parities vary with the inputs on their scale: a deep stack whose signal
    died gave every group the same parity, and training never left chance."""
    torch.manual_seed(0)
    enc = build(name, **args)
    shape = args.get("input_shape", args.get("sample_shape"))
    with torch.no_grad():
        out = enc(torch.randn(64, args["k"], *shape))  # (B, r, C, H, W)
    assert float(out.std(0).mean()) > 0.1


def test_conv_encoder_starts_as_the_mean_code():
    torch.manual_seed(0)
    enc = build("conv-encoder", k=3, r=2, input_shape=[2, 8, 8], channels_per_input=4)
    x = torch.randn(5, 3, 2, 8, 8)
    with torch.no_grad():
        out = enc(x)  # (B, r, C, H, W)
    torch.testing.assert_close(out, x.mean(1, keepdim=True).expand(5, 2, 2, 8, 8))


@pytest.mark.parametrize("name", ["mlp-encoder", "conv-encoder"])
def test_encoder_learns_a_parity_the_mean_is_not(name):
    """Forty Adam steps on one small batch fit the difference of the two inputs."""
    torch.manual_seed(0)
    shape = [1, 8, 8]
    key = "sample_shape" if name == "mlp-encoder" else "input_shape"
    args = {"channels_per_input": 4} if name == "conv-encoder" else {}
    enc = build(name, k=2, r=1, **{key: shape}, **args)
    x = torch.randn(16, 2, *shape)
    target = (x[:, 0] - x[:, 1]).unsqueeze(1)  # (B, 1, C, H, W)
    optimizer = torch.optim.Adam(enc.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = (enc(x) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.25 * losses[0]
