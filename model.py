"""The CNN: fewer than 20k parameters, BatchNorm, Dropout and Global Average Pooling."""
from dataclasses import dataclass

from torch import nn

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # over the 60k training images, scaled to [0, 1]


@dataclass
class ModelConfig:
    """The model's shape; saved in every checkpoint so that a loader can rebuild the model."""
    channels: tuple = (16, 16, 32, 40)  # widths of the four conv layers
    dropout: float = 0.05  # before the last conv, at 4x4: dropout at 13x13 cost 10% of a CPU step for nothing


def conv_bn_relu(c_in, c_out, padding):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=padding, bias=False),  # BN makes the bias redundant
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def feature_layers(config):
    """The conv layers, up to the last feature maps (CONFIG.channels[-1] of them)."""
    c1, c2, c3, c4 = config.channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c1), nn.ReLU(inplace=True),
        conv_bn_relu(c1, c2, 0), conv_bn_relu(c2, c3, 0), nn.MaxPool2d(2), nn.Dropout(config.dropout),
        conv_bn_relu(c3, c4, 1),
    )


class Net(nn.Module):
    """Input: images (N, 1, 28, 28) in [0, 1] (normalised inside). Output: logits (N, 10), not log-probs.

    28 -conv-> 26 -pool-> 13 -conv-> 11 -conv-> 9 -pool-> 4 -dropout, conv(pad 1)-> 4 -GAP-> 1 -linear-> 10
    Only one conv runs at full resolution, and its BatchNorm and ReLU run after the pooling, on a quarter of the
    pixels: at full resolution they cost more than the conv itself on a 2-core CPU (see NOTES.md). Unpadded convs
    shrink the maps further before the costlier layers.
    """
    trained_by = "train.py"

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        config = config or ModelConfig()
        self.config = config
        self.features = feature_layers(config)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(config.channels[-1], 10)

    def forward(self, x):
        x = (x - MNIST_MEAN) / MNIST_STD
        return self.classifier(self.gap(self.features(x)).flatten(1))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
