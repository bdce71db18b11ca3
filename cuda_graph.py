"""The CUDA path of a training epoch: the whole step (augmentation, forward, backward, Adam, the EMA) is captured
once in a CUDA graph and replayed. A step of this small model is about 130 kernels of a few microseconds each, so
launched one by one from Python the GPU waits on the host; replayed, a step is one launch."""
import functools
from collections import defaultdict

import torch
from tqdm import tqdm

WARMUP_STEPS = 3  # launched from Python before the capture: lazy initialisation must not happen inside a graph


def set_capturable(optimizer, capturable):
    """Make Adam's state fit the path it runs on, whichever path wrote the checkpoint it was resumed from: a graph
    reads the LR and the step count from device memory."""
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        group["lr"] = torch.tensor(lr, device=group["params"][0].device) if capturable else lr
        group["capturable"] = capturable


def keep_lrs_in_place(optimizer, lrs):
    """Put the LR each param group has now (a scheduler's cut) into LRS, the tensors a graph captured, and those
    tensors back into the groups: ReduceLROnPlateau fills them in place in newer torch (2.11, 2.15), but torch 2.6
    replaces them with floats, which the graph would never see."""
    for group, lr in zip(optimizer.param_groups, lrs, strict=True):
        lr.fill_(float(group["lr"]))
        group["lr"] = lr


def update_ema_in_graph(ema, model):
    """AveragedModel.update_parameters (use_buffers=True) once the EMA has started, minus its work on the host (the
    checks and count of n_averaged, a CPU tensor): the same multi_avg_fn on the same tensors, grouped by dtype."""
    groups = defaultdict(lambda: ([], []))
    for averaged, current in zip([*ema.module.parameters(), *ema.module.buffers()],
                                 [*model.parameters(), *model.buffers()], strict=True):
        groups[averaged.dtype][0].append(averaged.detach())
        groups[averaged.dtype][1].append(current.detach())
    for averaged, current in groups.values():
        ema.multi_avg_fn(averaged, current, ema.n_averaged)


class CapturedEpoch:
    """train.train_one_epoch on CUDA, with the same steps in the same order: call it once per epoch. STEP(x, y,
    update_ema) is train.training_step with the model, optimizer and precision bound: the step the graph captures."""

    def __init__(self, step, model, optimizer, images, labels, batch_size, augment, ema=None):
        self.step, self.model, self.optimizer, self.ema = step, model, optimizer, ema
        self.images, self.labels, self.batch_size, self.augment = images, labels, batch_size, augment
        self.index = torch.zeros(batch_size, dtype=torch.long, device=images.device)  # the graph's input
        self.lrs = [group["lr"] for group in optimizer.param_groups]  # tensors, by set_capturable: the graph reads
        self.loss_sum = torch.zeros((), device=images.device)  # the graph adds to these: fixed addresses
        self.correct = torch.zeros((), dtype=torch.long, device=images.device)
        self.stream = torch.cuda.Stream(images.device)  # warm-up and capture on one side stream, as CUDA graphs ask
        self.graph = None
        self.steps_launched = 0

    def step_on(self, index, update_ema):
        """One training step on IMAGES[INDEX], added to the epoch's tallies: captured, or launched kernel by kernel."""
        y = self.labels[index]
        loss, logits = self.step(self.augment(self.images[index]), y, update_ema=update_ema)
        self.loss_sum += loss * y.numel()
        self.correct += (logits.argmax(1) == y).sum()

    def launch(self, index):
        """A step launched from Python: the warm-up steps, and each epoch's last, smaller batch."""
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward owns its grads; these are new ones
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            self.step_on(index, self.ema.update_parameters if self.ema is not None else None)
        torch.cuda.current_stream().wait_stream(self.stream)
        self.steps_launched += 1

    def capture(self):
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates the grads in the graph's pool
        update_ema = functools.partial(update_ema_in_graph, self.ema) if self.ema is not None else None
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, stream=self.stream):
            self.step_on(self.index, update_ema)

    def __call__(self, desc):
        """One pass over IMAGES in a fresh random order, each batch freshly augmented. Returns (loss, accuracy %)."""
        self.model.train()
        keep_lrs_in_place(self.optimizer, self.lrs)
        order = torch.randperm(len(self.images), device=self.images.device)
        self.loss_sum.zero_()
        self.correct.zero_()
        for start in tqdm(range(0, len(self.images), self.batch_size), desc=desc, leave=False, disable=None):
            batch = order[start:start + self.batch_size]
            if self.graph is not None and len(batch) == self.batch_size:
                self.index.copy_(batch)
                self.graph.replay()
                if self.ema is not None:
                    self.ema.n_averaged += 1  # on the host, as update_parameters counts
                continue
            self.launch(batch)
            if self.graph is None and self.steps_launched >= WARMUP_STEPS and len(batch) == self.batch_size:
                self.capture()
        return self.loss_sum.item() / self.labels.numel(), 100 * self.correct.item() / self.labels.numel()
