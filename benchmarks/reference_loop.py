"""The torchvision-style training loop the end-to-end benchmark compares `ilsvrc train` with.

torchvision's alexnet with 10 classes, `ImageFolder` with PIL transforms (RandomResizedCrop(128), flip,
ToTensor, Normalize), a shuffling DataLoader with 2 workers, SGD; STEPS steps of batch 32. Prints one
JSON line: images/s over the whole loop (worker start-up included, as in `ilsvrc train`'s figure) and
the share of it spent waiting for the loader.

    python benchmarks/reference_loop.py DATA STEPS
"""

from __future__ import annotations

import json
import sys
import time

import torch
import torchvision
from torchvision import transforms as T


def main(data: str, steps: int) -> dict:
    torch.manual_seed(0)
    norm = T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    train_tf = T.Compose([T.RandomResizedCrop(128), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    train_set = torchvision.datasets.ImageFolder(f"{data}/train", train_tf)
    loader = torch.utils.data.DataLoader(train_set, batch_size=32, shuffle=True, num_workers=2,
                                         drop_last=True)  # fmt: skip
    model = torchvision.models.alexnet(num_classes=10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    images, waited, start = 0, 0.0, time.perf_counter()
    last = start
    for x, y in loader:
        waited += time.perf_counter() - last
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        images += len(y)
        last = time.perf_counter()
        if images // 32 >= steps:
            break
    seconds = time.perf_counter() - start
    return {"images_per_s": images / seconds, "data_wait": waited / seconds}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
