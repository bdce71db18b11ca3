import unittest

import repo  # noqa: F401 - first: it puts the repository on the path

import torch
from torch import nn

from model import ModelConfig, Net, count_parameters


class ModelSpecTest(unittest.TestCase):
    def setUp(self):
        self.model = Net()

    def test_fewer_than_20k_parameters(self):
        self.assertLess(count_parameters(self.model), 20_000)

    def test_uses_batchnorm(self):
        self.assertTrue(any(isinstance(m, nn.BatchNorm2d) for m in self.model.modules()))

    def test_uses_dropout(self):
        dropouts = [m for m in self.model.modules() if isinstance(m, nn.Dropout)]
        self.assertTrue(dropouts and all(m.p > 0 for m in dropouts))

    def test_uses_global_average_pooling(self):
        gap = [m for m in self.model.modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
        self.assertEqual([m.output_size for m in gap], [1])
        linears = [m for m in self.model.modules() if isinstance(m, nn.Linear)]
        self.assertEqual(len(linears), 1)  # no dense stack after the pooling
        self.assertEqual(linears[0].in_features, self.model.config.channels[-1])

    def test_output_is_logits_of_shape_n_by_10(self):
        out = self.model.eval()(torch.rand(5, 1, 28, 28))
        self.assertEqual(tuple(out.shape), (5, 10))
        self.assertFalse(torch.allclose(out.exp().sum(1), torch.ones(5)))  # not log-probs

    def test_config_shapes_the_model(self):
        small = Net(ModelConfig(channels=(4, 8, 8, 16)))
        self.assertLess(count_parameters(small), count_parameters(self.model))
        self.assertEqual(small.classifier.in_features, 16)


if __name__ == "__main__":
    unittest.main()
