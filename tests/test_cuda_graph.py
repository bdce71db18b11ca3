"""cuda_graph.py: the captured step does what train.py's launched step does. The EMA and the optimizer's settings
are checked on any machine; the captured epoch itself only where CUDA is (it is checked on a GPU before a release)."""
import functools
import unittest

import repo  # noqa: F401 - first: it puts the repository on the path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from cuda_graph import CapturedEpoch, keep_lrs_in_place, set_capturable, update_ema_in_graph
from data import random_affine
from model import Net
from train import train_one_epoch, training_step


def ema_of(model):
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)


class EmaTest(unittest.TestCase):
    def test_the_graphs_ema_is_averaged_models(self):
        """Weights, BatchNorm statistics and counts: what update_parameters gives, step after step."""
        torch.manual_seed(0)
        model = Net()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        launched, graphed = ema_of(model), ema_of(model)
        for step in range(4):
            x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
            F.cross_entropy(model(x), y).backward()  # train mode: BatchNorm's buffers move too
            optimizer.step()
            optimizer.zero_grad()
            launched.update_parameters(model)
            if step == 0:  # the first update copies: the graph is captured after it
                graphed.update_parameters(model)
            else:
                update_ema_in_graph(graphed, model)
                graphed.n_averaged += 1  # counted on the host, by CapturedEpoch
        ours, theirs = graphed.state_dict(), launched.state_dict()
        self.assertEqual(ours.keys(), theirs.keys())
        for name in ours:
            self.assertTrue(torch.equal(ours[name], theirs[name]), name)
        self.assertFalse(torch.equal(ours["module.classifier.weight"], model.classifier.weight))  # an average


class CapturableTest(unittest.TestCase):
    def test_the_plateau_schedule_reaches_a_captured_lr(self):
        model = torch.nn.Linear(2, 2)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
        set_capturable(optimizer, True)
        lr = optimizer.param_groups[0]["lr"]
        self.assertIsInstance(lr, torch.Tensor)  # a graph reads it from memory
        self.assertTrue(optimizer.param_groups[0]["capturable"])
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=0)
        scheduler.step(1.0)
        scheduler.step(2.0)  # worse: the LR is cut (torch 2.6: a float replaces the tensor)
        keep_lrs_in_place(optimizer, [lr])  # as CapturedEpoch does before each epoch
        self.assertIs(optimizer.param_groups[0]["lr"], lr)  # the captured address
        self.assertAlmostEqual(lr.item(), 0.006, places=6)
        scheduler.step(3.0)
        optimizer.param_groups[0]["lr"] = 0.001  # any float put there
        keep_lrs_in_place(optimizer, [lr])
        self.assertIs(optimizer.param_groups[0]["lr"], lr)
        self.assertAlmostEqual(lr.item(), 0.001, places=6)
        set_capturable(optimizer, False)  # a resumed run on another path
        self.assertEqual(optimizer.param_groups[0]["lr"], lr.item())
        self.assertIsInstance(optimizer.param_groups[0]["lr"], float)
        self.assertFalse(optimizer.param_groups[0]["capturable"])


@unittest.skipUnless(torch.cuda.is_available(), "no CUDA here")
class CapturedEpochTest(unittest.TestCase):
    def run_epochs(self, captured):
        """Two epochs of 1,000 images in batches of 64 (the last one smaller), captured or launched step by step."""
        torch.manual_seed(0)
        torch.backends.cudnn.deterministic = True
        device = torch.device("cuda")
        images, labels = torch.rand(1000, 1, 28, 28, device=device), torch.randint(0, 10, (1000,), device=device)
        model = Net().to(device, memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, fused=True)
        set_capturable(optimizer, captured)
        ema = ema_of(model)
        if captured:
            step = functools.partial(training_step, model, optimizer, label_smoothing=0.05)
            run_epoch = CapturedEpoch(step, model, optimizer, images, labels, 64, random_affine, ema)
        else:
            run_epoch = functools.partial(train_one_epoch, model, optimizer, images, labels, 64,
                                          augment=random_affine, label_smoothing=0.05, ema=ema)
        results = [run_epoch(desc="epoch")]
        optimizer.param_groups[0]["lr"] = 0.002  # a cut as torch 2.6's ReduceLROnPlateau makes it: a float
        results.append(run_epoch(desc="epoch"))
        return results, ema.state_dict()

    def test_replaying_the_graph_trains_as_launching_each_kernel(self):
        """The same losses, accuracies and averaged weights, an LR cut between the epochs included."""
        (captured, captured_ema), (launched, launched_ema) = self.run_epochs(True), self.run_epochs(False)
        self.assertEqual(captured, launched)
        for name in launched_ema:
            self.assertTrue(torch.equal(captured_ema[name], launched_ema[name]), name)


if __name__ == "__main__":
    unittest.main()
